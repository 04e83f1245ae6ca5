"""What is sent for some pages (PDF bytes, or images in a type Gemini reads) and its token cost.

Token estimate (for the shared tokens-per-minute limiter; Gemini's TPM quota counts input
tokens only): Gemini documents 258 tokens per PDF page, and for an image 258 tokens when both
sides are at most 384 pixels, else 258 per 768x768 tile. ``tokens_per_page`` (config) stands
for that 258, since newer models count more per page; the prompt counts one token for every
4 characters. The estimate is made before sending, so it never waits for a reply.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ocr_daemon.engines.base import Page
from ocr_daemon.formats import images, pdf
from ocr_daemon.formats.sniff import JPEG, PDF, PNG

# Gemini reads PNG, JPEG, WEBP, HEIC and HEIF images, not TIFF: those frames go as PNG.
SENT_AS_IS = (PNG, JPEG)
SMALL_IMAGE = 384
TILE = 768


@dataclass(frozen=True)
class Media:
    data: bytes
    mime: str
    pages: int  # pages (or images) it holds
    tiles: int  # token units: one per PDF page, one or more per image


def _tiles(data: bytes) -> int:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError):
        return 4  # a reasonable guess; the image was validated when it was planned
    if width <= SMALL_IMAGE and height <= SMALL_IMAGE:
        return 1
    return math.ceil(width / TILE) * math.ceil(height / TILE)


def media_for(path: Path, mime: str, pages: Sequence[Page]) -> list[Media]:
    """One PDF holding just these pages, or one image per page."""
    if mime == PDF:
        indices = [p.index for p in pages]
        return [Media(pdf.pages_pdf(path, indices), PDF, len(pages), len(pages))]
    out = []
    for page in pages:
        if mime in SENT_AS_IS and page.index == 0:
            data, kind = path.read_bytes(), mime
        else:
            data, kind = images.frame_png(path, page.index), PNG
        out.append(Media(data, kind, 1, _tiles(data)))
    return out


def estimate_tokens(media: Sequence[Media], prompt: str, tokens_per_page: int) -> int:
    """Input tokens of a request, estimated as the module docstring says."""
    return sum(m.tiles for m in media) * tokens_per_page + math.ceil(len(prompt) / 4)


def request_bytes(media: Sequence[Media], prompt: str) -> int:
    """Size of the JSON request when the media go inline (base64: 4 bytes for every 3)."""
    return sum(4 * math.ceil(len(m.data) / 3) for m in media) + len(prompt.encode()) + 1024
