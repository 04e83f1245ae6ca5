"""Write PDF objects by hand: text layers over an original (incremental update) or image pages.

The searchable PDF is streamed page by page: the original's bytes are copied unchanged and
an incremental update appends, for each page that gets a text layer, the layer as a Form
XObject and a new version of the page dictionary that draws it after the page's own
content. Nothing of the original is decoded or re-encoded, so the pages look exactly as
before, and memory holds one page's layer at a time (pypdf's writers hold every object).
"""

from __future__ import annotations

import hashlib
import io
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from pypdf import PdfReader
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    PdfObject,
    StreamObject,
)

LAYER_NAME = "/OCRdText"  # the Form XObject name a layered page draws (suffixed if taken)


@dataclass(frozen=True)
class Layer:
    """One text-only PDF page: its content stream, its resources, and its size."""

    reader: PdfReader
    data: bytes  # the content stream: Flate-compressed when ``compressed``
    compressed: bool
    resources: DictionaryObject
    width: float
    height: float

    @property
    def content(self) -> bytes:
        return zlib.decompress(self.data) if self.compressed else self.data

    @classmethod
    def parse(cls, data: bytes) -> Layer:
        reader = PdfReader(io.BytesIO(data), strict=False)
        page = reader.pages[0]
        ref = page.get("/Contents")
        stream = ref.get_object() if ref is not None else None
        if (isinstance(stream, StreamObject) and stream.get("/Filter") == "/FlateDecode"
                and "/DecodeParms" not in stream):
            raw, compressed = stream._data, True  # Tesseract's: taken as it is, not re-encoded
        else:
            contents = page.get_contents()
            raw, compressed = (contents.get_data() if contents is not None else b""), False
        resources = page.get("/Resources")
        res = resources.get_object() if resources is not None else DictionaryObject()
        if not isinstance(res, DictionaryObject):
            raise ValueError("the layer's resources are not a dictionary")
        box = page.mediabox
        return cls(reader, raw, compressed, res, float(box.width), float(box.height))


def serialize(obj: PdfObject, ref: Callable[[IndirectObject], bytes]) -> bytes:
    """A direct object's bytes; references written by ``ref`` (renumbered or kept)."""
    if isinstance(obj, IndirectObject):
        return ref(obj)
    if isinstance(obj, StreamObject):
        raise ValueError("a stream must be an indirect object")
    if isinstance(obj, DictionaryObject):
        body = b" ".join(_plain(NameObject(k)) + b" " + serialize(v, ref)
                         for k, v in obj.items())
        return b"<<" + body + b">>"
    if isinstance(obj, ArrayObject):
        return b"[" + b" ".join(serialize(v, ref) for v in obj) + b"]"
    return _plain(obj)


def _plain(obj: PdfObject) -> bytes:
    buf = io.BytesIO()
    obj.write_to_stream(buf)
    return buf.getvalue()


def keep(obj: IndirectObject) -> bytes:
    return f"{obj.idnum} {obj.generation} R".encode()


def stream_body(head: DictionaryObject, data: bytes,
                ref: Callable[[IndirectObject], bytes]) -> bytes:
    items = DictionaryObject({k: v for k, v in head.items() if k != "/Length"})
    return (serialize(items, ref)[:-2] + f" /Length {len(data)}>>\nstream\n".encode()
            + data + b"\nendstream")


class ObjectWriter:
    """Appends numbered objects to a file; copies object graphs of other PDFs (renumbered,
    identical objects written once: every Tesseract layer carries the same font)."""

    def __init__(self, fh: BinaryIO, first_number: int) -> None:
        self.fh = fh
        self.next = first_number
        self.offsets: dict[int, tuple[int, int]] = {}  # number -> (offset, generation)
        self._same: dict[bytes, int] = {}

    def reserve(self) -> int:
        number = self.next
        self.next += 1
        return number

    def put(self, body: bytes, number: int | None = None, generation: int = 0,
            share: bool = False) -> int:
        if share:
            key = hashlib.sha256(body).digest()
            if key in self._same:
                return self._same[key]
        number = self.reserve() if number is None else number
        self.offsets[number] = (self.fh.tell(), generation)
        self.fh.write(f"{number} {generation} obj\n".encode() + body + b"\nendobj\n")
        if share:
            self._same[hashlib.sha256(body).digest()] = number
        return number

    def stream(self, head: DictionaryObject, data: bytes, compress: bool = True) -> int:
        if compress:
            head = DictionaryObject({**head, NameObject("/Filter"): NameObject("/FlateDecode")})
            data = zlib.compress(data, 6)
        return self.put(stream_body(head, data, keep))

    def copy(self, obj: PdfObject) -> bytes:
        """``obj`` of another PDF as direct bytes, its indirect objects copied in first."""
        memo: dict[int, bytes] = {}

        def ref(ind: IndirectObject) -> bytes:
            if ind.idnum not in memo:
                memo[ind.idnum] = b"null"  # a cycle (Parent links): never in a layer's fonts
                target = ind.get_object()
                if isinstance(target, StreamObject):
                    body = stream_body(target, target._data, ref)
                elif target is None:
                    body = b"null"
                else:
                    body = serialize(target, ref)
                memo[ind.idnum] = f"{self.put(body, share=True)} 0 R".encode()
            return memo[ind.idnum]

        return serialize(obj, ref)

    def form(self, layer: Layer) -> int:
        """The layer as a Form XObject of its own size."""
        head = DictionaryObject({
            NameObject("/Type"): NameObject("/XObject"),
            NameObject("/Subtype"): NameObject("/Form"),
        })
        resources = self.copy(layer.resources)
        data = layer.data if layer.compressed else zlib.compress(layer.data, 6)
        body = (serialize(head, keep)[:-2]
                + f" /BBox [0 0 {_num(layer.width)} {_num(layer.height)}]".encode()
                + b" /Resources " + resources
                + f" /Filter /FlateDecode /Length {len(data)}>>\nstream\n".encode()
                + data + b"\nendstream")
        return self.put(body)

    def xref_table(self, fresh: bool = False) -> bytes:
        """A classic cross-reference section for the objects written, in numbered runs
        (``fresh``: a whole file's, with the free head entry 0)."""
        numbers = sorted(self.offsets)
        out = [b"xref\n", b"0 1\n0000000000 65535 f\r\n" if fresh else b""]
        run: list[int] = []
        for n in [*numbers, -1]:
            if run and n != run[-1] + 1:
                out.append(f"{run[0]} {len(run)}\n".encode())
                out += [f"{self.offsets[m][0]:010d} {self.offsets[m][1]:05d} n\r\n".encode()
                        for m in run]
                run = []
            if n >= 0:
                run.append(n)
        return b"".join(out)


def _num(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def placement(layer_w: float, layer_h: float, box: tuple[float, float, float, float],
              rotate: int) -> list[float]:
    """The matrix that lays a layer made from the page as displayed (pdfium renders the
    crop box, turned by /Rotate) over the page's unrotated user space."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    rotate %= 360
    shown_w, shown_h = (h, w) if rotate in (90, 270) else (w, h)
    sx, sy = shown_w / layer_w, shown_h / layer_h
    if rotate == 90:
        return [0, sx, -sy, 0, x1, y0]
    if rotate == 180:
        return [-sx, 0, 0, -sy, x1, y1]
    if rotate == 270:
        return [0, -sx, sy, 0, x0, y1]
    return [sx, 0, 0, sy, x0, y0]


def matrix(values: list[float]) -> str:
    return " ".join(_num(v) for v in values)


_STARTXREF = re.compile(rb"startxref\s+(\d+)")


def last_startxref(fh: BinaryIO) -> int:
    """The offset the file's last ``startxref`` names (the /Prev of an update)."""
    fh.seek(0, io.SEEK_END)
    size = fh.tell()
    fh.seek(max(0, size - 4096))
    found = _STARTXREF.findall(fh.read())
    if not found:
        raise ValueError("no startxref at the end of the file")
    return int(found[-1])
