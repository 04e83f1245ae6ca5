"""Plan a document: sniff its type, validate it, and split large PDFs into chunk files."""

from __future__ import annotations

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


def page_ranges(pages: int, per_chunk: int) -> list[tuple[int, int]]:
    return [(first, min(first + per_chunk - 1, pages)) for first in range(1, pages + 1, per_chunk)]


def should_chunk(watch: WatchConfig, mime: str, pages: int, size: int) -> bool:
    big = pages > watch.chunk_threshold_pages or size > watch.chunk_threshold_bytes
    return mime == PDF and big and pages > watch.chunk_pages


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


def make_plan(doc: Doc, now: float) -> Plan:
    """Validate the source and decide how to process it; raises DocumentError on bad input."""
    source = doc.dp.source
    size = source.stat().st_size
    if size > doc.watch.max_file_bytes:
        raise TooLarge(f"the file has {size} bytes, more than max_file_bytes "
                       f"({doc.watch.max_file_bytes})")
    mime = sniff(source)
    require_whole(source, mime)  # cut off while written or sent: never read it half
    candidates: list[str] = []
    decrypted = False
    if mime == PDF:
        opened, candidates = open_pdf(source, doc.watch)
        pages, decrypted = opened.pages, opened.decrypted
    else:
        pages = images.count_frames(source, doc.watch.max_pages)
    if doc.watch.pdf_output and pages > doc.watch.pdf_max_pages:
        raise TooLarge(f"the document has {pages} pages, more than pdf_max_pages "
                       f"({doc.watch.pdf_max_pages}) for the searchable PDF output",
                       hint="Raise pdf_max_pages, or drop pdf from this watch's outputs.")
    # Engines read a PDF opened with a password from its chunk files, which are not
    # encrypted: the password never leaves this function.
    if not decrypted and not should_chunk(doc.watch, mime, pages, size):
        return Plan(mime, pages, chunked=False, started_at=iso(now),
                    chunks=[ChunkSpec(0, 1, pages, None)])
    ranges = page_ranges(pages, doc.watch.chunk_pages)
    specs = [ChunkSpec(i, first, last, doc.dp.chunk_file(i).name)
             for i, (first, last) in enumerate(ranges)]
    doc.dp.chunks.mkdir(exist_ok=True)
    pdf.split(source, ranges, [doc.dp.chunk_file(s.index) for s in specs], candidates)
    return Plan(mime, pages, chunked=True, chunks=specs, started_at=iso(now),
                decrypted=decrypted)
