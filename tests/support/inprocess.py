"""The document state machine in this process: real Redis and folders, fake clock, tiny engine."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ocr_daemon import runtime
from ocr_daemon.config import Config, WatchConfig
from ocr_daemon.engines.base import (
    Engine,
    EngineContext,
    Extraction,
    PageRequest,
    PageText,
    TextPass,
)
from ocr_daemon.errors import PageFailed
from ocr_daemon.intake.claim import claim
from ocr_daemon.intake.dispatch import Dispatcher
from ocr_daemon.intake.reaper import Reaper
from ocr_daemon.pipeline import chunk as chunkwork
from ocr_daemon.pipeline import finish
from ocr_daemon.pipeline.start import start_document
from ocr_daemon.record import doc as docrecord
from ocr_daemon.record.disk import Manifest
from ocr_daemon.record.doc import Doc
from ocr_daemon.record.layout import WatchPaths
from tests.support.clock import FakeClock
from tests.support.pdfs import make_text_pdf


class WorkerKilled(BaseException):
    """Stands for a SIGKILL in the middle of an engine call: nothing of ours catches it."""


@dataclass
class PageEngine:
    """Answers 'text of page N' at once; counts the pages it was asked for, fails the pages in
    ``failing`` for good and 'kills the worker' on the pages in ``killing``."""

    name: str = "inprocess"
    calls: Counter[int] = field(default_factory=Counter)
    failing: set[int] = field(default_factory=set)
    killing: set[int] = field(default_factory=set)

    def extract(self, request: PageRequest) -> Extraction:
        numbers = [p.number for p in request.pages]
        if set(numbers) & self.killing:
            raise WorkerKilled(f"killed on pages {numbers}")
        self.calls.update(numbers)
        if set(numbers) & self.failing:
            raise PageFailed(f"page {min(set(numbers) & self.failing)} cannot be read")
        return Extraction([PageText(n, f"text of page {n}", self.name) for n in numbers])


@dataclass
class TextFirstEngine(PageEngine):
    """`auto` in miniature: a text pass that serves every page but those in ``scanned``,
    which extract() 'OCRs' (engine "ocr"); counts text-pass pages in ``text_calls``."""

    scanned: set[int] = field(default_factory=set)
    text_calls: Counter[int] = field(default_factory=Counter)

    def text_pass(self, request: PageRequest) -> TextPass:
        numbers = [p.number for p in request.pages]
        self.text_calls.update(numbers)
        read = [PageText(n, f"text of page {n}", "pdftext") for n in numbers
                if n not in self.scanned]
        ocr = tuple(p for p in request.pages if p.number in self.scanned)
        return TextPass(Extraction(read), ocr, {p.number: ("none", None) for p in ocr})

    def extract(self, request: PageRequest) -> Extraction:
        first = self.text_pass(request)
        ocred = super().extract(PageRequest(request.path, request.mime, first.ocr))
        for page in ocred.pages:
            page.engine = "ocr"
        pages = {p.number: p for p in first.read.pages + ocred.pages}
        return Extraction([pages[p.number] for p in request.pages])


Sent = tuple[str, str, str]  # (watch, doc_id, task_id), what process_document would receive


class Machine:
    """One watch's state machine: claim and queue files, start documents, run chunks, finish
    and reap them, each step a direct call. What the dispatcher and the reaper would send to
    Celery is captured in ``sent``."""

    def __init__(self, cfg: Config, engine: PageEngine | None = None) -> None:
        self.clock = FakeClock()
        self.engine = engine or PageEngine()
        self.rt = runtime.build(cfg, clock=self.clock, engine_factory=self._factory)
        self.watch: WatchConfig = cfg.watches[0]
        self.paths = WatchPaths.of(self.watch)
        self.paths.ensure()
        self.sent: list[Sent] = []
        self.dispatcher = Dispatcher(self.rt, self._send)
        self.reaper = Reaper(self.rt, self._send)

    def _factory(self, ctx: EngineContext) -> Engine:
        return self.engine

    def _send(self, watch: str, doc_id: str, task_id: str) -> None:
        self.sent.append((watch, doc_id, task_id))

    def drop(self, name: str, pages: int) -> Path:
        return make_text_pdf(self.paths.inbox / name, [f"page {n}" for n in
                                                       range(1, pages + 1)])

    def submit(self, name: str, pages: int) -> str:
        """Drop a PDF, claim it and queue it (the send captured); returns its doc id."""
        manifest = claim(self.paths, self.drop(name, pages), self.clock,
                         self.watch.max_file_bytes)
        assert isinstance(manifest, Manifest)
        assert self.dispatcher.queue(self.paths, manifest)
        return manifest.doc_id

    def doc(self, doc_id: str) -> Doc | None:
        return docrecord.load(self.rt, self.watch.name, doc_id)

    def deliver(self, doc_id: str, task_id: str = "task") -> str:
        """What the document task and its chunk tasks do, in order, without Celery: start,
        every pending chunk, then the ending. Returns the ending (or 'gone')."""
        doc = self.doc(doc_id)
        if doc is None:
            return "gone"
        plan = start_document(self.rt, doc, task_id)
        if plan is None:
            return "ended at start"
        for index in docrecord.pending_chunks(doc, plan):
            chunkwork.run_chunk(self.rt, doc, plan, index, may_retry=False)
        return finish.aggregate(self.rt, doc, plan)

    def reap(self) -> int:
        return self.reaper.reap(self.paths)

    def files(self, folder: str) -> list[str]:
        """Names of the files under one of the five folders, relative to it, sorted."""
        root = self.paths.root / folder
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def forget_redis(self) -> None:
        """Every key of this test's prefix gone, as after a flushed or restarted Redis."""
        keys = list(self.rt.store.r.scan_iter(f"{self.rt.store.prefix}*"))
        if keys:
            self.rt.store.r.delete(*keys)
