"""Celery tasks: thin wrappers over plain functions; payloads are watch names, ids and indexes.

Task names come from delivery.names and never change (queued messages carry them); the
module is registered on the app explicitly (names.TASK_MODULES).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import redis
from celery import Task, chord, group, signals

from ocr_daemon import log, runtime
from ocr_daemon.backoff import backoff
from ocr_daemon.celery_app import app, current_config
from ocr_daemon.clock import iso
from ocr_daemon.delivery import names, webhook
from ocr_daemon.errors import (
    ChunksPending,
    OcrDaemonError,
    ServiceUnavailable,
    WorkerCrashed,
    describe,
)
from ocr_daemon.pipeline import chunk as chunkwork
from ocr_daemon.pipeline import finish
from ocr_daemon.pipeline.chunk import ChunkOutcome
from ocr_daemon.pipeline.start import start_document
from ocr_daemon.pipeline.window import after_window, first_window
from ocr_daemon.record import doc as docrecord
from ocr_daemon.record.disk import Plan
from ocr_daemon.record.doc import Doc
from ocr_daemon.record.state import FAILED

# task_id, watch, doc_id and chunk on every log line of a task (structlog contextvars).
signals.task_prerun.connect(log.bind_task, weak=False, dispatch_uid="ocr_daemon.log.bind")
signals.task_postrun.connect(log.unbind_task, weak=False, dispatch_uid="ocr_daemon.log.unbind")
_runtime: tuple[int, runtime.Runtime] | None = None


def worker_runtime() -> runtime.Runtime:
    """One Runtime per process (built after fork: Redis connections are not shared)."""
    global _runtime
    if _runtime is None or _runtime[0] != os.getpid():
        _runtime = (os.getpid(), runtime.build(current_config(),
                                               on_end=[webhook.notifier(app)]))
    return _runtime[1]


def _waited(task: Task) -> int:
    """How many of the task's retries were waits (carried in its ``waited`` keyword)."""
    return int((task.request.kwargs or {}).get("waited", 0))


def _may_retry(task: Task) -> bool:
    """Retries left? Waits (a full disk, a paused engine) are not counted."""
    return bool(task.request.retries - _waited(task) < current_config().workers.max_retries)




def _retry(task: Task, exc: OcrDaemonError, rt: runtime.Runtime, doc_id: str) -> Any:
    # Celery counts every retry in request.retries and stops when it passes max_retries;
    # `max_retries=None` there means the task's default (3), not "no limit". So each call
    # says how many retries this one may be: waits always, others only up to max_retries
    # counted without the waits.
    w = current_config().workers
    retry_after = getattr(exc, "retry_after", None)
    waited = _waited(task)
    if exc.waits:  # wait in steps no longer than the visibility timeout allows
        kwargs = {**(task.request.kwargs or {}), "waited": waited + 1}
        log.get(task_id=task.request.id, doc_id=doc_id).warning("waiting", **exc.to_dict())
        with contextlib.suppress(OcrDaemonError):  # shown by status and the progress file
            rt.store.set_doc(doc_id, waiting={**exc.to_dict(), "since": iso(rt.clock.time())})
        # Not max_retries=None: Celery reads None as "the task's default" (3), and the 4th
        # wait would fail the chunk (a chord error) instead of waiting on.
        return task.retry(exc=exc, countdown=min(retry_after or w.retry_backoff_max,
                                                 w.retry_backoff_max),
                          max_retries=task.request.retries + 1, kwargs=kwargs)
    delay = backoff(task.request.retries - waited, w.retry_backoff, w.retry_backoff_max,
                    retry_after)
    return task.retry(exc=exc, countdown=delay, max_retries=w.max_retries + waited)


def _redelivered(task: Task) -> bool:
    """The message was handed back to its queue before (kombu marks it so)."""
    return bool((task.request.delivery_info or {}).get("redelivered"))


def _crashed_too_often(task: Task, rt: runtime.Runtime) -> WorkerCrashed | None:
    """A message delivered again and again killed its worker each time: a poison document.

    A first delivery is not counted in Redis: only a message handed back to its queue can
    kill a worker twice, and kombu marks every message it hands back (a worker lost, the
    visibility timeout, the reaper's restore) as redelivered. So the count is the
    redeliveries counted in Redis plus the first delivery.
    """
    if not _redelivered(task):
        return None
    count = rt.store.count_redelivery(task.request.id, task.request.retries) + 1
    cap = current_config().workers.max_redeliveries
    if count <= cap + 1:
        return None
    return WorkerCrashed(f"the worker process died {count - 1} times working on it "
                         f"(task {task.name}); it is not tried again")


# Results of documents live in their files; only chunk tasks keep a Celery result (the
# chord's join reads them). Ignoring the others also spares the sender a result subscription.
@app.task(bind=True, name=names.PROCESS_DOCUMENT, ignore_result=True)
def process_document(self: Task, watch: str, doc_id: str, waited: int = 0) -> None:
    rt = worker_runtime()
    doc = docrecord.load(rt, watch, doc_id)
    if doc is None:
        return  # already ended: a redelivery has nothing to do
    try:
        if crashed := _crashed_too_often(self, rt):
            finish.fail_document(rt, doc, crashed, doc.plan())
            return
        plan = start_document(rt, doc, self.request.id)
        if plan is None:
            return
        if not plan.chunked:  # every chunk here (`auto`: its text chunks are read already)
            first_try = self.request.retries == 0 and not _redelivered(self)
            for spec in plan.chunks:
                chunkwork.run_chunk(rt, doc, plan, spec.index, may_retry=_may_retry(self),
                                    first_try=first_try)
            _end(self, rt, doc, plan)
            return
        window = first_window(doc, plan)
        if not window:
            _end(self, rt, doc, plan)
            return
        fan_out(watch, doc_id, window)
    except OcrDaemonError as exc:
        if not exc.retryable:
            raise
        raise _retry(self, exc, rt, doc_id) from exc


@app.task(bind=True, name=names.PROCESS_CHUNK)
def process_chunk(self: Task, watch: str, doc_id: str, index: int,
                  waited: int = 0) -> dict[str, Any]:
    rt = worker_runtime()
    doc = docrecord.load(rt, watch, doc_id)
    plan = doc.plan() if doc else None
    if doc is None or plan is None:
        return ChunkOutcome(index, "gone").to_dict()
    may_retry = _may_retry(self)
    try:
        if crashed := _crashed_too_often(self, rt):
            return chunkwork.record_failure(rt, doc, plan, index, crashed.to_dict()).to_dict()
        return chunkwork.run_chunk(rt, doc, plan, index, may_retry=may_retry).to_dict()
    except Exception as exc:  # boundary: a chord member must return, or the aggregate never runs
        if isinstance(exc, OcrDaemonError) and exc.should_retry(may_retry):
            raise _retry(self, exc, rt, doc_id) from exc
        if isinstance(exc, ServiceUnavailable | redis.RedisError):
            raise  # Redis is away: the message comes back, or the reaper queues it again
        if not isinstance(exc, OcrDaemonError):
            log.get(doc_id=doc_id, chunk=index).exception("chunk_crashed")
        try:
            return chunkwork.record_failure(rt, doc, plan, index, describe(exc)).to_dict()
        except OcrDaemonError:  # Redis down: the error file on disk is what the aggregate reads
            return ChunkOutcome(index, FAILED, describe(exc)).to_dict()


def fan_out(watch: str, doc_id: str, window: list[int]) -> None:
    """A chord of one window of chunks; its callback (window_done) sends the next window, or
    ends the document (pipeline.window decides which)."""
    chord(
        group(process_chunk.s(watch, doc_id, index) for index in window),
        window_done.s(watch, doc_id, window),
    ).apply_async()


def _end(task: Task, rt: runtime.Runtime, doc: Doc, plan: Plan) -> str:
    """Aggregate; chunks not ended yet (finish.PENDING) mean a look again in a few seconds."""
    state = finish.aggregate(rt, doc, plan)
    if state == finish.PENDING:
        raise task.retry(exc=ChunksPending(f"chunks {docrecord.pending_chunks(doc, plan)} of "
                                           f"{doc.doc_id} have not ended"),
                         countdown=5, max_retries=60)
    return state


# Named for what it was before it also sent the next window: the name must not change.
@app.task(bind=True, name=names.WINDOW_DONE, max_retries=None, ignore_result=True)
def window_done(self: Task, outcomes: list[dict[str, Any]], watch: str, doc_id: str,
                window: list[int] | None = None) -> str:
    """The callback of a window's chord: the next window, or the document's ending.

    ``outcomes`` (the chunks' ChunkOutcome records, which the chord passes first) are not
    read: the chunk files on disk are the record, and a duplicate delivery may fire the
    chord before every chunk of the window has ended.
    """
    rt = worker_runtime()
    doc = docrecord.load(rt, watch, doc_id)
    plan = doc.plan() if doc else None
    if doc is None or plan is None:
        return "gone"
    try:
        if crashed := _crashed_too_often(self, rt):
            return finish.fail_document(rt, doc, crashed, plan)
        step = after_window(doc, plan, window or [])
        if not step.late:
            if step.next:
                fan_out(watch, doc_id, step.next)
                return "next window"
            return _end(self, rt, doc, plan)
    except OcrDaemonError as exc:
        if not exc.retryable:
            raise
        raise _retry(self, exc, rt, doc_id) from exc
    # A duplicate chunk delivery fired the chord before these chunks ended: look again soon.
    raise self.retry(exc=ChunksPending(f"chunks {step.late} of {doc_id} have not ended"),
                     countdown=5, max_retries=60)
