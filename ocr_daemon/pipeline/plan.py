"""Plan a document by cost: sniff and validate it, then group its pages into chunks.

A chunk is a list of pages of the original (usually a range), read in place: nothing is
split up front. How pages are grouped follows what a page costs the watch's engine
(`COSTS`): a text layer about a millisecond, so text pages go in chunks of up to
`text_chunk_pages` (most documents in one pass); OCR or a remote engine seconds, so those
pages go in chunks of `chunk_pages`, fanned out once there are more
than `chunk_threshold_pages` of them (or the file is over `chunk_threshold_bytes`).
`auto` reads every page's text layer in the document task first (the cheapest probe of
which pages need OCR is reading them), then fans out only the pages without a usable one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ocr_daemon import passwords
from ocr_daemon.clock import iso
from ocr_daemon.config import WatchConfig
from ocr_daemon.errors import EncryptedDocument, TooLarge
from ocr_daemon.formats import images, pdf
from ocr_daemon.formats.complete import require_whole
from ocr_daemon.formats.sniff import PDF, sniff
from ocr_daemon.record.disk import ChunkSpec, Plan
from ocr_daemon.record.doc import Doc

TEXT = "text layer"  # about a millisecond a page
OCR = "ocr"  # seconds a page (Tesseract), or a remote engine's latency
TEXT_FIRST = "text layer, then ocr"  # auto: its text pass decides which pages are OCR
COSTS: dict[str, str] = {"pdftext": TEXT, "auto": TEXT_FIRST}  # any other engine: OCR

# Reads the text layer of the given pages of a PDF, saving the text pages' results as the
# first chunks (0, 1, ...); returns those chunks' pages and the pages that need OCR.
TextReader = Callable[[Path, list[int]], tuple[list[list[int]], list[int]]]


def cost_of(engine: str) -> str:
    return COSTS.get(engine, OCR)


def should_chunk(watch: WatchConfig, pages: int, size: int, per_chunk: int) -> bool:
    """More than one chunk for ``pages`` pages of a kind read ``per_chunk`` to a chunk?"""
    big = pages > watch.chunk_threshold_pages or size > watch.chunk_threshold_bytes
    return big and pages > per_chunk


def in_chunks(pages: list[int], per_chunk: int) -> list[list[int]]:
    """``pages`` in chunks of ``per_chunk``, the last one shorter. Not evened out: with a
    fixed number of workers, 21 pages as 10 + 10 + 1 end after 11 page-times on two
    workers, as 7 + 7 + 7 after 14."""
    return [pages[i:i + per_chunk] for i in range(0, len(pages), per_chunk)]


def groups(watch: WatchConfig, pages: list[int], size: int, per_chunk: int) -> list[list[int]]:
    """The chunks of ``pages`` of one kind: one, or chunks of ``per_chunk``."""
    if not pages:
        return []
    if not should_chunk(watch, len(pages), size, per_chunk):
        return [pages]
    return in_chunks(pages, per_chunk)


def open_pdf(source: Path, watch: WatchConfig) -> tuple[pdf.Opened, list[str]]:
    """The PDF's page count, with the empty password or else those of the watch's
    passwords_file (read only for an encrypted PDF), and the passwords tried."""
    try:
        return pdf.inspect(source, watch.max_pages), []
    except EncryptedDocument:
        if watch.passwords_file is None:
            raise
    candidates = passwords.read(watch.passwords_file)
    return pdf.inspect(source, watch.max_pages, candidates), candidates


def readable(doc: Doc, decrypted: bool) -> Path:
    """The file the engines read: the source, or its decrypted copy."""
    return doc.dp.decrypted if decrypted else doc.dp.source


def make_plan(doc: Doc, now: float, read_text: TextReader | None = None) -> Plan:
    """Validate the source and decide its chunks; raises DocumentError on bad input.
    ``read_text`` is the text pass of a text-first engine (`auto`), run here for a PDF."""
    source, watch = doc.dp.source, doc.watch
    size = source.stat().st_size
    if size > watch.max_file_bytes:
        raise TooLarge(f"the file has {size} bytes, more than max_file_bytes "
                       f"({watch.max_file_bytes})")
    mime = sniff(source)
    require_whole(source, mime)  # cut off while written or sent: never read it half
    decrypted = False
    if mime == PDF:
        opened, candidates = open_pdf(source, watch)
        pages, decrypted = opened.pages, opened.decrypted
        if decrypted:  # the password never leaves this function: engines read a copy
            pdf.write_decrypted(source, doc.dp.decrypted, candidates)
    else:
        pages = images.count_frames(source, watch.max_pages)
    if watch.pdf_output and pages > watch.pdf_max_pages:
        raise TooLarge(f"the document has {pages} pages, more than pdf_max_pages "
                       f"({watch.pdf_max_pages}) for the searchable PDF output",
                       hint="Raise pdf_max_pages, or drop pdf from this watch's outputs.")
    numbers = list(range(1, pages + 1))
    cost = cost_of(watch.engine) if mime == PDF else OCR  # an image has no text layer
    done: list[list[int]] = []  # chunks read already (auto's text pages)
    if cost == TEXT:
        todo = groups(watch, numbers, size, watch.text_chunk_pages)
    elif cost == TEXT_FIRST and read_text is not None:
        done, ocr = read_text(readable(doc, decrypted), numbers)
        todo = groups(watch, ocr, size, watch.chunk_pages)
    else:
        todo = groups(watch, numbers, size, watch.chunk_pages)
    specs = [ChunkSpec.of(i, chunk) for i, chunk in enumerate(done + todo)]
    return Plan(mime, pages, chunked=len(todo) > 1, chunks=specs, started_at=iso(now),
                decrypted=decrypted)
