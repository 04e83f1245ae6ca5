"""Searchable PDFs: text layers laid over an original PDF's pages, or image frames as pages.

This module is the boundary to pypdf and Pillow for the pdf output: whatever they raise on
one page is turned into a per-page warning (the page stays as it was), and whatever makes
the whole file impossible into our errors.
"""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from PIL import Image
from pypdf import PageObject, PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject, NumberObject

from ocr_daemon.errors import CorruptDocument, EncryptedDocument
from ocr_daemon.formats import images
from ocr_daemon.formats.pdfwrite import (
    LAYER_NAME,
    Layer,
    ObjectWriter,
    keep,
    last_startxref,
    matrix,
    placement,
    serialize,
)

# (page number, width, height as displayed in points) -> its layer; None: leave the page
LayerFor = Callable[[int, float, float], Layer | None]
Warn = Callable[[str], None]


def _name(xobjects: DictionaryObject) -> NameObject:
    name, n = LAYER_NAME, 0
    while name in xobjects:  # our own output dropped in again: its layer stays, ours is added
        n += 1
        name = f"{LAYER_NAME}{n}"
    return NameObject(name)


def _dict(value: object) -> DictionaryObject:
    target = value.get_object() if isinstance(value, IndirectObject) else value
    return DictionaryObject(target) if isinstance(target, DictionaryObject) else DictionaryObject()


def _box(page: PageObject) -> tuple[float, float, float, float]:
    box = page.cropbox
    x0, x1 = sorted((float(box[0]), float(box[2])))
    y0, y1 = sorted((float(box[1]), float(box[3])))
    return x0, y0, x1, y1


def shown_size(box: tuple[float, float, float, float], rotate: int) -> tuple[float, float]:
    """A page's width and height as a viewer shows it (turned by /Rotate)."""
    w, h = box[2] - box[0], box[3] - box[1]
    return (h, w) if rotate % 180 == 90 else (w, h)


def _update_page(w: ObjectWriter, reader: PdfReader, page: PageObject, layer: Layer,
                 opening: int) -> None:
    """Append a new version of ``page``: its own content inside q/Q, then the layer."""
    ref = page.indirect_reference
    if ref is None:
        raise ValueError("the page is not an indirect object")
    resources = _dict(page.get("/Resources"))  # a copy: the dictionary may be shared
    xobjects = _dict(resources.get("/XObject"))
    name = _name(xobjects)
    form = w.form(layer)
    xobjects[name] = IndirectObject(form, 0, reader)
    resources[NameObject("/XObject")] = xobjects
    where = placement(layer.width, layer.height, _box(page), page.rotation)
    closing = w.stream(DictionaryObject(), f"\nQ q {matrix(where)} cm {name} Do Q\n".encode())
    contents = page.get("/Contents")
    resolved = contents.get_object() if isinstance(contents, IndirectObject) else contents
    own: list[IndirectObject] = []
    if isinstance(resolved, ArrayObject):
        own = [c for c in resolved if isinstance(c, IndirectObject)]
    elif isinstance(contents, IndirectObject):
        own = [contents]
    new = DictionaryObject(page)
    new[NameObject("/Contents")] = ArrayObject(
        [IndirectObject(opening, 0, reader), *own, IndirectObject(closing, 0, reader)])
    new[NameObject("/Resources")] = resources
    w.put(serialize(new, keep), number=ref.idnum, generation=ref.generation)


def overlay(source: Path, out: BinaryIO, layer_for: LayerFor, warn: Warn) -> int:
    """Copy ``source`` to ``out`` unchanged, then an incremental update giving each page its
    layer; returns how many pages got one. Pages are read one at a time."""
    try:
        reader = PdfReader(source, strict=False)
        encrypted = reader.is_encrypted
        pages = len(reader.pages)
        trailer = reader.trailer
    except Exception as exc:  # pypdf raises many types on damaged files
        raise CorruptDocument(f"the PDF cannot be read for the pdf output: {exc}") from exc
    if encrypted:
        raise EncryptedDocument("the original is encrypted: its pages cannot carry a layer "
                                "without its password")
    with open(source, "rb") as src:
        shutil.copyfileobj(src, out)
        try:
            prev = last_startxref(src)
        except ValueError as exc:  # read by pypdf's repair: an update could not chain to it
            raise CorruptDocument(f"the PDF cannot take an update: {exc}") from exc
    out.write(b"\n")
    w = ObjectWriter(out, int(trailer.get("/Size", 0)))
    opening = 0  # the shared "q" that opens every layered page's own content, when needed
    layered = 0
    for number in range(1, pages + 1):
        try:
            page = reader.pages[number - 1]
            layer = layer_for(number, *shown_size(_box(page), page.rotation))
            if layer is None:
                continue
            opening = opening or w.put(b"<</Length 2>>\nstream\nq\n\nendstream")
            _update_page(w, reader, page, layer, opening)
            layered += 1
        except Exception as exc:  # this page keeps its original form; the others go on
            warn(f"page {number}: no text layer in the PDF ({type(exc).__name__}: {exc})")
    if not w.offsets:
        return 0  # no page has a layer to add: the original as it is
    head = DictionaryObject({NameObject("/Size"): NumberObject(max(w.next, 1)),
                             NameObject("/Prev"): NumberObject(prev)})
    for key in ("/Root", "/Info", "/ID"):
        if key in trailer:
            head[NameObject(key)] = trailer.raw_get(key)
    xref_at = out.tell()
    out.write(w.xref_table() + b"trailer\n" + serialize(head, keep)
              + f"\nstartxref\n{xref_at}\n%%EOF\n".encode())
    return layered


def _image_xobject(w: ObjectWriter, img: Image.Image, path: Path) -> int:
    """The frame as an image XObject: a JPEG file's own bytes, else lossless Flate."""
    head = DictionaryObject({NameObject("/Type"): NameObject("/XObject"),
                             NameObject("/Subtype"): NameObject("/Image")})
    width, height = img.size
    size = f" /Width {width} /Height {height}".encode()
    if img.format == "JPEG" and img.mode in ("L", "RGB"):
        space = "/DeviceGray" if img.mode == "L" else "/DeviceRGB"
        data = path.read_bytes()
        body = (serialize(head, keep)[:-2] + size
                + f" /ColorSpace {space} /BitsPerComponent 8 /Filter /DCTDecode"
                  f" /Length {len(data)}>>\nstream\n".encode() + data + b"\nendstream")
        return w.put(body)
    frame = img if img.mode in ("1", "L", "RGB") else img.convert(
        "L" if img.mode in ("I;16", "I", "F", "LA") else "RGB")
    bits = 1 if frame.mode == "1" else 8
    space = "/DeviceRGB" if frame.mode == "RGB" else "/DeviceGray"
    data = zlib.compress(frame.tobytes(), 6)
    body = (serialize(head, keep)[:-2] + size
            + f" /ColorSpace {space} /BitsPerComponent {bits} /Filter /FlateDecode"
              f" /Length {len(data)}>>\nstream\n".encode() + data + b"\nendstream")
    return w.put(body)


def image_pages(path: Path, out: BinaryIO, frames: int, dpi_for: Callable[[Image.Image, int], int],
                layer_for: LayerFor, warn: Warn) -> int:
    """A new PDF of one page per image frame, at the frame's resolution, each with its
    layer; frames are decoded one at a time. Returns how many pages got a layer."""
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    w = ObjectWriter(out, 3)  # 1: catalog, 2: page tree, written last
    kids: list[int] = []
    layered = 0
    img = images.open_image(path)
    with img:
        for index in range(frames):
            try:
                img.seek(index)
                dpi = dpi_for(img, index)
                picture = _image_xobject(w, img, path)
            except (OSError, ValueError, EOFError, SyntaxError) as exc:
                raise CorruptDocument(f"page {index + 1} of the image cannot be read: "
                                      f"{exc}") from exc
            width, height = img.size[0] * 72 / dpi, img.size[1] * 72 / dpi
            draw = f"q {matrix([width, 0, 0, height, 0, 0])} cm /Im0 Do Q\n"
            resources = f"/XObject <</Im0 {picture} 0 R".encode()
            try:
                layer = layer_for(index + 1, width, height)
                if layer is not None:
                    form = w.form(layer)
                    where = placement(layer.width, layer.height, (0, 0, width, height), 0)
                    draw += f"q {matrix(where)} cm {LAYER_NAME} Do Q\n"
                    resources += f" {LAYER_NAME} {form} 0 R".encode()
                    layered += 1
            except Exception as exc:  # the page stays an image without a layer
                warn(f"page {index + 1}: no text layer in the PDF "
                         f"({type(exc).__name__}: {exc})")
            content = w.stream(DictionaryObject(), draw.encode())
            kids.append(w.put(
                b"<</Type /Page /Parent 2 0 R /MediaBox [0 0 "
                + matrix([width, height]).encode() + b"] /Resources <<" + resources
                + b">>>> /Contents " + f"{content} 0 R>>".encode()))
    w.put(b"<</Type /Pages /Count " + str(len(kids)).encode() + b" /Kids ["
          + b" ".join(f"{k} 0 R".encode() for k in kids) + b"]>>", number=2)
    w.put(b"<</Type /Catalog /Pages 2 0 R>>", number=1)
    xref_at = out.tell()
    out.write(w.xref_table(fresh=True) + f"trailer\n<</Size {w.next} /Root 1 0 R>>\n"
              f"startxref\n{xref_at}\n%%EOF\n".encode())
    return layered
