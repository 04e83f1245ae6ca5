"""Is a file whole? Judged by its format's own end markers, so a paused writer is not taken.

A writer that closes the file between bursts (scan-to-folder devices, sync tools, any writer
seen from another NFS or SMB client) looks finished to a settle timer. Its format says
otherwise: a PDF ends with ``startxref <offset> %%EOF``, a PNG with its IEND chunk, a JPEG
with the EOI marker, and a TIFF's directories (and the strips or tiles they name) lie inside
the file. Each check reads at most a few KB.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ocr_daemon.errors import TruncatedDocument
from ocr_daemon.formats.sniff import JPEG, PDF, PNG, TIFF

TAIL_BYTES = 1024  # PDF readers look for %%EOF in the last 1 KB
_STARTXREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF")
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_EOI = b"\xff\xd9"
# Bytes per value of each TIFF field type (BYTE, ASCII, SHORT, LONG, RATIONAL, ..., LONG8).
_TIFF_WIDTH = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
               13: 4, 16: 8, 17: 8, 18: 8}
_TIFF_FORMAT = {3: "H", 4: "I", 13: "I", 16: "Q"}
_PLACES = ((273, 279), (324, 325))  # (StripOffsets, StripByteCounts), (TileOffsets, ...)
SUB_IFDS = 330
_LOOKED_AT = frozenset({273, 279, 324, 325, SUB_IFDS})
MAX_IFDS = 10_000


def _tail(fh: BinaryIO, size: int, n: int) -> bytes:
    fh.seek(max(0, size - n))
    return fh.read(n)


def _pdf(fh: BinaryIO, size: int) -> bool:
    found = list(_STARTXREF.finditer(_tail(fh, size, TAIL_BYTES)))
    return bool(found) and int(found[-1].group(1)) < size


def _png(fh: BinaryIO, size: int) -> bool:
    return _IEND in _tail(fh, size, 64)


def _jpeg(fh: BinaryIO, size: int) -> bool:
    return _EOI in _tail(fh, size, 64)


def _tiff_values(fh: BinaryIO, endian: str, kind: int, count: int, field: bytes) -> list[int]:
    fmt = _TIFF_FORMAT.get(kind, "I")
    width = struct.calcsize(fmt) * count
    if width <= 4:
        data = field[:width]
    else:
        here = fh.tell()
        fh.seek(struct.unpack(endian + "I", field)[0])
        data = fh.read(width)
        fh.seek(here)
    if len(data) < width:
        return []
    return list(struct.unpack(endian + fmt * count, data))


def _tiff(fh: BinaryIO, size: int) -> bool:
    """Every directory (the chain and SubIFDs) and the strips or tiles it names are inside."""
    fh.seek(0)
    head = fh.read(8)
    endian = "<" if head[:2] == b"II" else ">"
    todo = [struct.unpack(endian + "I", head[4:8])[0]]
    seen: set[int] = set()
    while todo:
        offset = todo.pop()
        if offset in seen or len(seen) >= MAX_IFDS or offset + 2 > size:
            return False
        seen.add(offset)
        fh.seek(offset)
        (count,) = struct.unpack(endian + "H", fh.read(2))
        body = fh.read(count * 12 + 4)
        if len(body) < count * 12 + 4:
            return False
        fields: dict[int, list[int]] = {}
        for i in range(count):
            tag, kind, n, value = struct.unpack(endian + "HHII", body[i * 12:i * 12 + 12])
            width = _TIFF_WIDTH.get(kind, 1) * n
            if width > 4 and value + width > size:
                return False
            if tag in _LOOKED_AT:
                fields[tag] = _tiff_values(fh, endian, kind, n, body[i * 12 + 8:i * 12 + 12])
        for starts, lengths in _PLACES:
            if len(fields.get(starts, ())) != len(fields.get(lengths, ())):
                return False
            if any(a + b > size for a, b in zip(fields.get(starts, ()), fields.get(lengths, ()),
                                                strict=True)):
                return False
        todo += fields.get(SUB_IFDS, [])
        (following,) = struct.unpack(endian + "I", body[-4:])
        if following:
            todo.append(following)
    return True


_CHECKS: dict[str, Callable[[BinaryIO, int], bool]] = {
    PDF: _pdf, PNG: _png, JPEG: _jpeg, TIFF: _tiff,
}


def whole(path: Path, mime: str) -> bool:
    """True when ``path`` (of type ``mime``, from sniff) has its format's end; types we do not
    judge count as whole. An unreadable file is not whole."""
    check = _CHECKS.get(mime)
    if check is None:
        return True
    try:
        with open(path, "rb") as fh:
            return check(fh, fh.seek(0, 2))
    except (OSError, struct.error):
        return False


def require_whole(path: Path, mime: str) -> None:
    """Raise TruncatedDocument when ``path`` is not whole."""
    if not whole(path, mime):
        raise TruncatedDocument(f"the {mime.split('/')[1].upper()} file has no end: "
                                "it was cut off while being written or sent")
