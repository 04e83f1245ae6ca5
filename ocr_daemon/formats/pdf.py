"""PDF adapter: open and validate, decrypt with a password, read the text layer, render.

This module is the boundary to pypdf and pypdfium2: whatever they raise on a damaged file
is turned into our CorruptDocument / EncryptedDocument here and nowhere else.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pypdfium2
import pypdfium2.raw as pypdfium2_raw
from pypdf import PasswordType, PdfReader, PdfWriter
from pypdf.errors import FileNotDecryptedError, PdfReadError

from ocr_daemon import atomic
from ocr_daemon.errors import CorruptDocument, EncryptedDocument, StorageError, TooLarge
from ocr_daemon.formats import textlayer

# Tesseract refuses images wider or taller than 32767 pixels; a letter page at 600 dpi is
# 34 million pixels. Larger renders only cost memory.
RENDER_MAX_SIDE = 32000
RENDER_MAX_PIXELS = 64_000_000


def _open(path: Path, passwords: Sequence[str] = ()) -> PdfReader:
    return _open_decrypted(path, passwords)[0]


def _open_decrypted(path: Path, passwords: Sequence[str] = ()) -> tuple[PdfReader, bool]:
    """The PDF opened, decrypted with the empty user password or one of ``passwords``; and
    whether one of ``passwords`` was needed."""
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            if not any(reader.decrypt(pw) != PasswordType.NOT_DECRYPTED for pw in passwords):
                raise EncryptedDocument(_needs_password(len(passwords)))
            return reader, True
        return reader, False
    except (EncryptedDocument, OSError):
        raise
    except FileNotDecryptedError as exc:
        raise EncryptedDocument(f"the PDF is encrypted and cannot be opened ({exc})") from exc
    except PdfReadError as exc:
        raise CorruptDocument(f"the PDF cannot be read: {exc}") from exc
    except Exception as exc:  # pypdf raises many types on damaged files: all mean "corrupt"
        raise CorruptDocument(f"the PDF cannot be read: {type(exc).__name__}: {exc}") from exc


def _needs_password(tried: int) -> str:
    if not tried:
        return "the PDF is encrypted and needs a password to open"
    return (f"the PDF is encrypted and none of the {tried} passwords in the watch's "
            "passwords_file opens it")


@dataclass(frozen=True)
class Opened:
    pages: int
    decrypted: bool  # True when it opened only with a password from passwords_file


def inspect(path: Path, max_pages: int, passwords: Sequence[str] = ()) -> Opened:
    """Open the PDF (empty user password, then each of ``passwords``), check it has
    1..max_pages pages, and say whether a password was needed.

    PDFium counts the pages (1.5 ms for 352 pages, where pypdf parsed for 160 ms); pypdf
    only tries the passwords of an encrypted PDF, as it also writes the decrypted copy."""
    try:
        with _pdfium(path) as doc:
            pages, decrypted = len(doc), False
    except EncryptedDocument:
        reader, decrypted = _open_decrypted(path, passwords)
        try:
            pages = len(reader.pages)
        except Exception as exc:  # damaged page tree
            raise CorruptDocument(f"the PDF's page tree is damaged: {exc}") from exc
    if pages < 1:
        raise CorruptDocument("the PDF has no pages")
    if pages > max_pages:
        raise TooLarge(f"the PDF has {pages} pages, more than max_pages ({max_pages})")
    return Opened(pages, decrypted)


def count_pages(path: Path, max_pages: int) -> int:
    """Open the PDF (empty user password allowed), check it has 1..max_pages pages."""
    return inspect(path, max_pages).pages


def write_decrypted(source: Path, target: Path, passwords: Sequence[str]) -> None:
    """A copy of ``source``, opened with one of ``passwords``, without its encryption: what
    the engines read, so that the password never leaves the plan. Kept when it exists (an
    earlier, interrupted plan wrote it whole: the write is atomic)."""
    if target.exists():
        return
    reader = _open(source, passwords)
    writer = PdfWriter()
    try:
        for page in reader.pages:
            writer.add_page(page)
        tmp = target.parent / atomic.temp_name()
        with open(tmp, "wb") as fh:
            writer.write(fh)
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc.strerror}") from exc
    except Exception as exc:  # a page pypdf cannot copy: the document is damaged
        raise CorruptDocument(f"the decrypted PDF cannot be written: {exc}") from exc
    atomic.move(tmp, target)


# PDFium is not thread-safe, not even for different documents: a threads worker pool (the one
# for remote engines) ran pdfium calls at once and hung (found by the 300-page test). One
# lock per process around every use (tests/fake_gemini.py takes it too); in prefork workers
# it is never contended.
PDFIUM_LOCK = threading.RLock()


@contextlib.contextmanager
def _pdfium(path: Path) -> Iterator[pypdfium2.PdfDocument]:
    with PDFIUM_LOCK:
        try:
            doc = pypdfium2.PdfDocument(path)
        except pypdfium2.PdfiumError as exc:
            if "password" in str(exc).lower():
                raise EncryptedDocument("the PDF is encrypted and needs a password") from exc
            raise CorruptDocument(f"the PDF is damaged and cannot be read: {exc}") from exc
        try:
            yield doc
        finally:
            doc.close()


def page_texts(path: Path, indices: list[int]) -> list[str]:
    """pypdfium2's text of the given 0-based pages as we write it (textlayer.clean)."""
    return [textlayer.clean(text) for text, _ in page_layers(path, indices)]


def page_layers(path: Path, indices: list[int],
                count_objects: bool = True) -> list[tuple[str, int]]:
    """Raw pypdfium2 text of the given 0-based pages, and how many text objects each draws,
    for the quality check in formats/textlayer.py. Counting is a loop over the page's
    objects, so it is done only where it can matter: a page with at least a quarter as many
    characters as objects of any kind passes that check whatever the count, and gets the
    number of all its objects instead."""
    texts = []
    with _pdfium(path) as doc:
        for i in indices:
            try:
                page = doc[i]
                textpage = page.get_textpage()
                text = textpage.get_text_bounded()
                textpage.close()
                objects = 0
                if count_objects:
                    objects = _text_objects(page, textlayer.visible_count(text))
                page.close()
            except pypdfium2.PdfiumError as exc:
                raise CorruptDocument(f"page {i + 1} cannot be read: {exc}") from exc
            texts.append((text, objects))
    return texts


def blank_pages(path: Path, indices: list[int]) -> list[bool]:
    """For each 0-based page: does it draw nothing at all (no page object, no annotation)?
    A blank page of a book has no text layer, and nothing for OCR to read either."""
    flags = []
    with _pdfium(path) as doc:
        for i in indices:
            try:
                page = doc[i]
                flags.append(int(pypdfium2_raw.FPDFPage_CountObjects(page)) == 0
                             and int(pypdfium2_raw.FPDFPage_GetAnnotCount(page)) == 0)
                page.close()
            except pypdfium2.PdfiumError as exc:
                raise CorruptDocument(f"page {i + 1} cannot be read: {exc}") from exc
    return flags


def _text_objects(page: pypdfium2.PdfPage, chars: int) -> int:
    total = int(pypdfium2_raw.FPDFPage_CountObjects(page))
    if chars >= textlayer.MIN_CHARS_PER_OBJECT * total:
        return total
    return sum(1 for j in range(total) if pypdfium2_raw.FPDFPageObj_GetType(
        pypdfium2_raw.FPDFPage_GetObject(page, j)) == pypdfium2_raw.FPDF_PAGEOBJ_TEXT)


def pypdf_texts(path: Path, indices: list[int]) -> list[str | None]:
    """pypdf's text of the given 0-based pages; None for a page pypdf cannot read."""
    reader = _open(path)
    texts: list[str | None] = []
    for i in indices:
        try:
            texts.append(reader.pages[i].extract_text())
        except Exception:  # pypdf raises many types on damaged pages: not this extractor's
            texts.append(None)
    return texts


# CID fonts whose character collection only an extractor with Adobe's CID-to-Unicode tables
# (poppler with Debian's poppler-data) can map when the font has no ToUnicode.
CJK_ORDERINGS = frozenset({"Japan1", "GB1", "CNS1", "Korea1"})


def _unmapped_cjk_font(ref: Any) -> bool:
    try:
        font = ref.get_object()
        if font.get("/Subtype") != "/Type0" or "/ToUnicode" in font:
            return False
        descendant = font["/DescendantFonts"][0].get_object()
        ordering = descendant["/CIDSystemInfo"].get_object().get("/Ordering")
        return str(ordering) in CJK_ORDERINGS
    except Exception:  # a damaged font dictionary says nothing either way
        return False


def cid_unmapped(path: Path, indices: list[int]) -> list[bool]:
    """For each 0-based page: does it use a CJK CID font without a ToUnicode map?"""
    reader = _open(path)
    flags = []
    for i in indices:
        try:
            resources: Any = reader.pages[i]["/Resources"].get_object()
            fonts = resources["/Font"].get_object()
            flags.append(any(_unmapped_cjk_font(f) for f in fonts.values()))
        except Exception:  # no fonts, or a damaged resource dictionary
            flags.append(False)
    return flags


def render(path: Path, index: int, dpi: int) -> tuple[bytes, int]:
    """One 0-based page as grayscale PNG bytes, and the resolution used: ``dpi``, or less for
    a page so large (a poster, a hostile 8400-pt page) that it would pass RENDER_MAX_PIXELS
    or RENDER_MAX_SIDE pixels."""
    with _pdfium(path) as doc:
        try:
            page = doc[index]
            width, height = page.get_size()  # points
            dpi = min(dpi, int(72 * math.sqrt(RENDER_MAX_PIXELS / max(1.0, width * height))),
                      int(72 * RENDER_MAX_SIDE / max(1.0, width, height)))
            bitmap = page.render(scale=max(dpi, 1) / 72, grayscale=True)
            image = bitmap.to_pil()
        except pypdfium2.PdfiumError as exc:
            raise CorruptDocument(f"page {index + 1} cannot be rendered: {exc}") from exc
        buf = io.BytesIO()
        image.save(buf, format="PNG", dpi=(dpi, dpi))
        return buf.getvalue(), dpi


def pages_pdf(path: Path, indices: list[int]) -> bytes:
    """A PDF of just the given 0-based pages, in memory (the file's own bytes if that is all)."""
    with _pdfium(path) as doc:
        if indices == list(range(len(doc))):
            return path.read_bytes()
        new = pypdfium2.PdfDocument.new()
        try:
            new.import_pages(doc, indices)
            buf = io.BytesIO()
            new.save(buf)
        except pypdfium2.PdfiumError as exc:
            raise CorruptDocument(f"pages {[i + 1 for i in indices]} cannot be copied: "
                                  f"{exc}") from exc
        finally:
            new.close()
        return buf.getvalue()
