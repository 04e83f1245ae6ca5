"""`auto`'s first pass, in the document task: every page's text layer, saved as chunks."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ocr_daemon import log
from ocr_daemon.engines.base import Page, PageRequest, PageText, TextFirst
from ocr_daemon.errors import EngineUnavailable
from ocr_daemon.formats.sniff import PDF
from ocr_daemon.record.disk import ChunkResult
from ocr_daemon.record.doc import Doc
from ocr_daemon.runtime import Runtime
from ocr_daemon.service import metrics


def read_text_layers(rt: Runtime, doc: Doc, path: Path,
                     numbers: list[int]) -> tuple[list[list[int]], list[int]]:
    """The text layer of pages ``numbers`` of the PDF at ``path``, read `text_chunk_pages`
    at a time: the pages it serves are saved as the results of chunks 0, 1, ... (their
    result files exist before the plan that names them: a plan made again rewrites the same
    files). Returns those chunks' pages, and the pages that need OCR."""
    engine = rt.engine(doc.watch)
    if not isinstance(engine, TextFirst):
        raise EngineUnavailable(f"engine {doc.watch.engine!r} has no text pass")
    started = rt.clock.monotonic()
    results: list[ChunkResult] = []
    ocr: list[int] = []
    read: list[PageText] = []
    step = doc.watch.text_chunk_pages
    for first in range(0, len(numbers), step):
        batch = numbers[first:first + step]
        found = engine.text_pass(PageRequest(path, PDF, tuple(Page(n, n - 1) for n in batch),
                                             layers=doc.watch.pdf_output))
        ocr += [p.number for p in found.ocr]
        if found.read.pages:
            results.append(ChunkResult(len(results), [asdict(p) for p in found.read.pages],
                                       found.read.warnings))
            read += found.read.pages
    # Without OCR pages the plan is one pass, whose results the decided ending carries
    # (Outcome): a lost or torn one is read again. Beside chunks that fan out, they are
    # durable like any chunk's result.
    for result in results:
        result.save(doc.dp.chunk_result(result.index), durable=bool(ocr))
    chunks = [[int(p["number"]) for p in result.pages] for result in results]
    seconds = rt.clock.monotonic() - started
    if read:
        metrics.extracted(rt.store, doc.watch.engine, doc.watch.name, read, seconds)
    log.get(doc_id=doc.doc_id, watch=doc.watch.name).info(
        "text_pass_done", text_pages=len(read), ocr_pages=len(ocr), seconds=round(seconds, 3))
    return chunks, ocr
