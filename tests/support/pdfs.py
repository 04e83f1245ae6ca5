"""Documents for tests and benchmarks: text-layer PDFs, drawn pages and image-only PDFs."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any


def _pdf_string(text: str) -> bytes:
    data = text.encode("cp1252", errors="replace")
    return b"(" + data.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _content(text: str) -> bytes:
    if not text:
        return b""
    lines = [b"BT", b"/F1 11 Tf", b"14 TL", b"56 760 Td"]
    for line in text.split("\n"):
        lines.append(_pdf_string(line) + b" Tj T*")
    lines.append(b"ET")
    return b"\n".join(lines)


def make_text_pdf(path: Path, pages: list[str], compress: bool = True) -> Path:
    """Write a PDF whose page i has the text ``pages[i]`` (an empty string: a blank page)."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, filled in below
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    kids = []
    for text in pages:
        stream = _content(text)
        extra = b""
        if compress and stream:
            stream, extra = zlib.compress(stream), b" /Filter /FlateDecode"
        objects.append(b"<< /Length %d%s >>\nstream\n" % (len(stream), extra) + stream
                       + b"\nendstream")
        content_ref = len(objects)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                       b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
                       % content_ref)
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    path.write_bytes(assemble(objects))
    return path


def assemble(objects: list[bytes]) -> bytes:
    """A whole PDF file of ``objects`` (numbered from 1; object 1 is the catalog)."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def drawn_page(text: str, dpi: int = 150) -> Any:
    """A half-letter grayscale image with ``text`` set in 12-point type (Pillow's own font)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("L", (int(8.5 * dpi), int(5.5 * dpi)), 255)
    font = ImageFont.load_default(size=round(12 * dpi / 72))
    ImageDraw.Draw(img).multiline_text((dpi, dpi), text, fill=0, font=font,
                                       spacing=round(6 * dpi / 72))
    return img


def image_pdf(path: Path, pages: list[Any], dpi: int = 150) -> Path:
    """An image-only PDF (a scan, as a scanner makes it): one page per image, no text layer."""
    pages[0].save(path, format="PDF", resolution=dpi, save_all=True, append_images=pages[1:])
    return path


def page_text(number: int, words: int = 12) -> str:
    """Deterministic, distinct text for page ``number``."""
    vocab = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
             "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"]
    body = " ".join(vocab[(number * 7 + i) % len(vocab)] for i in range(words))
    return f"Page {number} of the test document\n{body}"
