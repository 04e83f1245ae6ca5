"""Image adapter (Pillow): validate PNG/JPEG/TIFF inputs, count frames, get one frame as PNG."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ocr_daemon.errors import CorruptDocument, TooLarge

# Far above any real scan (A0 at 600 dpi is about 0.35 gigapixels), far below a bomb.
Image.MAX_IMAGE_PIXELS = 400_000_000


def open_image(path: Path) -> Image.Image:
    """Open an image for reading; a bomb or an unreadable file becomes our error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooLarge(f"the image is too large to process safely: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise CorruptDocument(f"the image cannot be read: {exc}") from exc


def count_frames(path: Path, max_pages: int) -> int:
    """Check the image decodes; a multi-page TIFF counts one page per frame."""
    with open_image(path) as img:
        frames = getattr(img, "n_frames", 1)
        if frames > max_pages:
            raise TooLarge(f"the image has {frames} pages, more than max_pages ({max_pages})")
        try:
            for i in range(frames):
                img.seek(i)
                img.load()
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise CorruptDocument(f"the image is damaged or truncated: {exc}") from exc
    return frames


def frame_png(path: Path, index: int) -> bytes:
    """One frame as PNG bytes (grayscale kept, alpha dropped)."""
    with open_image(path) as img:
        try:
            img.seek(index)
            frame = img.convert("L") if img.mode not in ("L", "1") else img.copy()
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise CorruptDocument(f"page {index + 1} of the image cannot be read: {exc}") from exc
    buf = io.BytesIO()
    frame.save(buf, format="PNG")
    return buf.getvalue()
