"""Decide a file's type from its content, never from its name."""

from __future__ import annotations

from pathlib import Path

from ocr_daemon.errors import EmptyFile, UnsupportedType

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
TIFF = "image/tiff"
IMAGE_TYPES = (PNG, JPEG, TIFF)

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"\xff\xd8\xff", JPEG),
    (b"II*\x00", TIFF),
    (b"MM\x00*", TIFF),
)


def sniff(path: Path) -> str:
    """Return the mime type of ``path`` or raise EmptyFile / UnsupportedType."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if not head:
        raise EmptyFile("the file is empty (0 bytes)")
    for magic, mime in _SIGNATURES:
        if head.startswith(magic):
            return mime
    # PDF readers accept the header anywhere in the first 1024 bytes.
    if b"%PDF-" in head:
        return PDF
    return_hint = head[:16].hex(" ")
    raise UnsupportedType(
        f"not a PDF, PNG, JPEG or TIFF file (content starts with {return_hint})"
    )
