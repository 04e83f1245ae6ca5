"""One claimed document as the workers see it: its record on disk and its live state."""

from __future__ import annotations

from dataclasses import dataclass

from ocr_daemon.clock import iso
from ocr_daemon.config import WatchConfig
from ocr_daemon.record.disk import ChunkError, Manifest, Outcome, Plan
from ocr_daemon.record.layout import DocPaths, Outputs, WatchPaths
from ocr_daemon.record.state import (
    COMPLETED,
    FAILED,
    PROCESSING,
    QUEUED,
    ChunkState,
    DocState,
    chunk_pages,
)
from ocr_daemon.runtime import Runtime


@dataclass
class Doc:
    watch: WatchConfig
    paths: WatchPaths
    dp: DocPaths
    manifest: Manifest

    @property
    def doc_id(self) -> str:
        return self.manifest.doc_id

    @property
    def out(self) -> Outputs:
        stem = self.manifest.stem
        if stem is None:  # the claimer always reserves a stem before queueing
            raise RuntimeError(f"document {self.doc_id} has no output stem")
        return self.paths.outputs(self.manifest.rel_dir, stem, self.manifest.name)

    def plan(self) -> Plan | None:
        try:
            return Plan.load(self.dp.plan)
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None  # not planned yet, or torn by a crash: planned again

    def outcome(self) -> Outcome | None:
        return Outcome.load(self.dp.outcome)


def load(rt: Runtime, watch_name: str, doc_id: str) -> Doc | None:
    """The document's record, or None when it is gone (finished: nothing left to do)."""
    watch, paths = rt.watch(watch_name)
    dp = paths.doc(doc_id)
    try:
        manifest = Manifest.load(dp.manifest)
    except FileNotFoundError:
        return None
    return Doc(for_document(watch, manifest), paths, dp, manifest)


def for_document(watch: WatchConfig, manifest: Manifest) -> WatchConfig:
    """The watch's settings as this document runs them: with its own engine if it has one
    (an API upload or reprocess may choose another)."""
    if manifest.engine and manifest.engine != watch.engine:
        return watch.model_copy(update={"engine": manifest.engine})
    return watch


def chunk_state_on_disk(doc: Doc, index: int) -> str:
    if doc.dp.chunk_result(index).exists():
        return COMPLETED
    if doc.dp.chunk_error(index).exists():
        return FAILED
    return QUEUED


def pending_chunks(doc: Doc, plan: Plan) -> list[int]:
    """Chunks that have neither a result nor an error file yet."""
    return [c.index for c in plan.chunks if chunk_state_on_disk(doc, c.index) == QUEUED]


def ensure_live(rt: Runtime, doc: Doc, plan: Plan | None) -> DocState:
    """The document's Redis state, recreated from disk when missing (a flushed Redis)."""
    live = rt.store.get(doc.doc_id)
    if live is not None:
        return live
    rt.store.set_doc(
        doc.doc_id, state=PROCESSING if plan else QUEUED, watch=doc.watch.name,
        name=doc.manifest.name, stem=doc.manifest.stem,
        created_at=doc.manifest.claimed_at, restored_at=iso(rt.clock.time()),
    )
    if plan:
        init_chunks(rt, doc, plan)
    return rt.store.get(doc.doc_id) or DocState(doc.doc_id, {})


def init_chunks(rt: Runtime, doc: Doc, plan: Plan) -> None:
    """Record the plan's shape in Redis, with the chunks the disk says have ended."""
    states = {c.index: chunk_state_on_disk(doc, c.index) for c in plan.chunks}
    failed = []
    for c in plan.chunks:
        if states[c.index] == FAILED:
            error = ChunkError.load(doc.dp.chunk_error(c.index)).error
            failed.append(ChunkState(c.index, [c.first_page, c.last_page], FAILED, error=error))
    first = plan.chunks[0]
    per_chunk = first.last_page - first.first_page + 1
    spans = [[c.first_page, c.last_page] for c in plan.chunks]
    regular = spans == [chunk_pages(c.index, per_chunk, plan.pages) for c in plan.chunks]
    rt.store.init_chunks(doc.doc_id, len(plan.chunks), per_chunk, plan.pages,
                         [i for i, s in states.items() if s == COMPLETED], failed,
                         one_pass=not plan.chunked, spans=None if regular else spans)


def publish(rt: Runtime, doc: Doc, plan: Plan | None = None, wait: bool = False) -> None:
    rt.progress.publish(doc.out, doc.manifest, plan if plan else doc.plan(), wait)
