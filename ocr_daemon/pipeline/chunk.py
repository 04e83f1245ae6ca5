"""Extract one chunk: idempotent, result to a file in processing/, state to Redis."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ocr_daemon import atomic, log
from ocr_daemon.clock import iso
from ocr_daemon.engines.base import Page, PageRequest
from ocr_daemon.errors import OcrDaemonError, StorageError, describe
from ocr_daemon.pipeline.plan import readable
from ocr_daemon.record.disk import ChunkError, ChunkResult, ChunkSpec, Plan
from ocr_daemon.record.doc import Doc, ensure_live, publish
from ocr_daemon.record.state import COMPLETED, FAILED, PROCESSING, QUEUED, ChunkState
from ocr_daemon.runtime import Runtime
from ocr_daemon.service import metrics


@dataclass
class ChunkOutcome:
    """The small status record a chunk returns (the chord carries these, never text)."""

    index: int
    state: str  # completed | failed
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _publish(rt: Runtime, doc: Doc, plan: Plan) -> None:
    """Chunk state changes show in the progress file of a chunked document. A document done
    in one pass shows processing, then its ending: its one chunk's states last milliseconds
    for text layers, and each write cost two Redis round trips and a file."""
    if plan.chunked:
        publish(rt, doc, plan)


def request_for(doc: Doc, plan: Plan, spec: ChunkSpec) -> PageRequest:
    """The chunk's pages, read in place from the source (or its decrypted copy)."""
    if spec.file:  # a plan of an earlier version: its chunk file holds just these pages
        path = doc.dp.chunk_file(spec.index)
        pages = tuple(Page(n, i) for i, n in enumerate(spec.pages))
    else:
        path = readable(doc, plan.decrypted)
        pages = tuple(Page(n, n - 1) for n in spec.pages)
    return PageRequest(path=path, mime=plan.mime, pages=pages, layers=doc.watch.pdf_output)


def save_layers(doc: Doc, layers: dict[int, bytes]) -> None:
    """Each page's text layer beside the chunk results, before the result that marks the
    chunk done (a chunk done again rewrites the same files)."""
    if not layers:
        return
    try:  # never parents: a record removed by an ending (a cancel) must stay removed
        doc.dp.layers.mkdir(exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {doc.dp.layers}: {exc.strerror or exc}") from exc
    for number, data in layers.items():
        atomic.write_bytes(doc.dp.layer(number), data, create_parents=False, durable=False)


def run_chunk(rt: Runtime, doc: Doc, plan: Plan, index: int, *, may_retry: bool,
              first_try: bool = False) -> ChunkOutcome:
    """Extract chunk ``index``. A retryable error is raised when ``may_retry``, else recorded.

    ``first_try``: the document's task on its first delivery and first try, right after
    start_document wrote the document's state."""
    spec = plan.chunks[index]
    logger = log.get(doc_id=doc.doc_id, watch=doc.watch.name, chunk=index)
    result_file = doc.dp.chunk_result(index)
    if result_file.exists() and (plan.chunked or ChunkResult.whole(result_file)):
        return ChunkOutcome(index, COMPLETED)  # a torn one-pass result is extracted again
    if doc.dp.chunk_error(index).exists():
        return ChunkOutcome(index, FAILED, ChunkError.load(doc.dp.chunk_error(index)).error)
    # A one-pass document's first attempt writes no chunk state: while the document is
    # processing or completed, its chunk's state is the document's (DocState.chunk). A
    # retry or a failure still writes the chunk's entry, as for chunked documents.
    if first_try and not plan.chunked:
        # Nothing to read: start_document has just written (or rebuilt) the document's
        # state, and only an earlier try or delivery could have left an entry for its chunk.
        quiet, chunk = True, ChunkState(index, [spec.first_page, spec.last_page])
    else:
        live = ensure_live(rt, doc, plan)  # Redis may have lost the state: rebuilt from disk
        quiet, chunk = live.one_pass and index not in live.entries, live.chunk(index)
    chunk.state, chunk.attempts = PROCESSING, (1 if quiet else chunk.attempts + 1)
    chunk.started_at, chunk.error = iso(rt.clock.time()), None
    if not quiet:
        rt.store.set_chunk(doc.doc_id, chunk)
        _publish(rt, doc, plan)
    started = rt.clock.monotonic()
    try:
        extraction = rt.engine(doc.watch).extract(request_for(doc, plan, spec))
        save_layers(doc, extraction.layers)
        ChunkResult(index, [asdict(p) for p in extraction.pages], extraction.warnings,
                    extraction.usage).save(result_file, durable=plan.chunked)
    except OcrDaemonError as exc:
        metrics.engine_error(rt.store, doc.watch.engine, exc.code)
        chunk.error = describe(exc)
        if exc.should_retry(may_retry):
            chunk.state = QUEUED
            rt.store.set_chunk(doc.doc_id, chunk)
            _publish(rt, doc, plan)
            logger.warning("chunk_retry", attempts=chunk.attempts, **chunk.error)
            raise
        return record_failure(rt, doc, plan, index, chunk.error)
    metrics.extracted(rt.store, doc.watch.engine, doc.watch.name, extraction.pages,
                      rt.clock.monotonic() - started)
    chunk.state, chunk.finished_at = COMPLETED, iso(rt.clock.time())
    if not quiet:  # else completed with its document, in the ending's one write
        rt.store.set_chunk(doc.doc_id, chunk)
        _publish(rt, doc, plan)
    logger.info("chunk_done", pages=len(spec.pages),
                seconds=round(rt.clock.monotonic() - started, 3))
    return ChunkOutcome(index, COMPLETED)


def record_failure(rt: Runtime, doc: Doc, plan: Plan, index: int,
                   error: dict[str, Any]) -> ChunkOutcome:
    """A chunk failed for good: the error file on disk first (the aggregate reads it)."""
    ChunkError(index, error).save(doc.dp.chunk_error(index))
    spec = plan.chunks[index]
    log.get(doc_id=doc.doc_id, watch=doc.watch.name, chunk=index).warning("chunk_failed", **error)
    live = rt.store.get(doc.doc_id)
    pages = [spec.first_page, spec.last_page]
    chunk = live.chunk(index) if live else ChunkState(index=index, pages=pages)
    chunk.state, chunk.error, chunk.finished_at = FAILED, error, iso(rt.clock.time())
    rt.store.set_chunk(doc.doc_id, chunk)
    _publish(rt, doc, plan)
    return ChunkOutcome(index, FAILED, error)
