"""The reaper: documents whose work was lost are queued again from disk, or failed after a cap.

A document is *lost* when it has made no progress for `stall_timeout` seconds (its Redis
state, result files and dispatch record all unchanged) and no message of it is left in the
broker (queued, or held unacknowledged by a worker). That covers a flushed or restarted
Redis, a lost message, and a worker killed past Celery's own redelivery. A document merely
waiting in a long queue is never touched. Messages that a dead worker still holds
unacknowledged are handed back to their queues without waiting for the visibility timeout.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from ocr_daemon import log, redis_conn
from ocr_daemon.clock import Clock, iso
from ocr_daemon.delivery import broker
from ocr_daemon.errors import OcrDaemonError, Stalled
from ocr_daemon.pipeline.finish import document_lock, fail_document
from ocr_daemon.record.disk import DispatchNote, Manifest
from ocr_daemon.record.doc import Doc, ensure_live
from ocr_daemon.record.layout import WatchPaths
from ocr_daemon.runtime import Runtime

if TYPE_CHECKING:
    from celery import Celery

# An unacknowledged message younger than this may not be registered in its worker yet.
STRANDED_AFTER = 10.0


def last_activity(doc: Doc, live_ts: float | None) -> float:
    """The latest sign of progress: Redis, or any file of the document's record."""
    times = [live_ts or 0.0]
    for folder in (doc.dp.dir, doc.dp.results):
        try:
            with os.scandir(folder) as entries:
                times += [e.stat(follow_symlinks=False).st_mtime for e in entries]
        except OSError:
            continue
    return max(times)


class Reaper:
    def __init__(self, rt: Runtime, requeue: Callable[[str, str, str], None],
                 clock: Clock | None = None, app: Celery | None = None) -> None:
        self.rt = rt
        self.requeue = requeue  # (watch, doc_id, task_id): sends process_document
        self.clock = clock or rt.clock
        self.app = app  # asks the workers what they hold; None: no stranded messages handed back

    def stalled(self, paths: WatchPaths, stall: float | None = None) -> list[Doc]:
        """Documents of this watch with no progress for ``stall`` (stall_timeout) seconds."""
        cfg = self.rt.cfg
        watch = cfg.watch(paths.name)
        now = self.clock.time()
        found = []
        for entry in paths.doc_dirs():
            dp = paths.doc(entry.name)
            if not dp.dispatch.exists():
                continue  # never queued: the sweep's job
            try:
                doc = Doc(watch, paths, dp, Manifest.load(dp.manifest))
            except (OSError, ValueError, TypeError):
                continue
            live = self.rt.store.get(doc.doc_id)
            live_ts = float(live.fields.get("updated_ts", 0)) if live else None
            # A chunk still running is not judged here: its message is held unacknowledged
            # by its worker, which reap() sees. A chunk left "processing" in Redis with no
            # message anywhere (Redis restarted under it) is lost work like any other.
            limit = cfg.stall_timeout if stall is None else stall
            if now - last_activity(doc, live_ts) > limit:
                found.append(doc)
        return found

    def reap(self, paths: WatchPaths, stall: float | None = None) -> int:
        """Queue lost documents again; fail those past max_document_attempts. Returns count.

        ``stall=0`` at start-up: every dispatched document with no message left is lost.
        """
        self._restore_stranded()
        candidates = self.stalled(paths, stall)
        if not candidates:
            return 0
        ids = {d.doc_id for d in candidates}
        with redis_conn.unavailable():
            queued, held = broker.mentions(self.rt.store.r, self.rt.cfg.redis.key_prefix, ids)
        alive = queued | {d for d in ids for u in held if d in u.message}
        done = 0
        for doc in candidates:
            if doc.doc_id in alive:
                continue
            try:
                done += self._reap_one(doc)
            except OcrDaemonError as exc:
                log.get(doc_id=doc.doc_id).warning("reap_failed", **exc.to_dict())
        return done

    def _restore_stranded(self) -> None:
        """Messages held by no live worker (it was killed): back to their queues now, rather
        than after the broker's visibility timeout. Those of ended documents then run as
        no-ops and are gone."""
        if self.app is None:
            return
        with redis_conn.unavailable():
            held = broker.unacked(self.rt.store.r, self.rt.cfg.redis.key_prefix)
        old = [u for u in held if self.clock.time() - u.delivered_at > STRANDED_AFTER]
        if not old:
            return
        live = broker.live_task_ids(self.app)
        if live is None:
            return  # no worker answered: nothing to compare with
        stranded = [u for u in old if u.task_id not in live]
        if stranded:
            broker.restore(self.app, [u.tag for u in stranded])
            log.get().warning("messages_restored", count=len(stranded),
                              tasks=[u.task_id for u in stranded])

    def _reap_one(self, doc: Doc) -> int:
        """Re-queue under the document's ending lock (a worker may be ending it right now);
        past the cap, fail it (fail_document takes that lock itself)."""
        lock = document_lock(self.rt, doc)
        if not lock.acquire(blocking=False):
            return 0  # another watcher is reaping it, or a worker is ending it
        try:
            if not doc.dp.manifest.exists():
                return 0  # it ended meanwhile
            note = DispatchNote.load(doc.dp.dispatch)  # torn by a crash: counts as one
            attempts = note.attempts if note else 1
            if attempts < self.rt.cfg.max_document_attempts:
                self._requeue(doc, attempts)
                return 1
        finally:
            lock.release()
        stall = self.rt.cfg.stall_timeout
        log.get(doc_id=doc.doc_id, watch=doc.watch.name, attempts=attempts).error(
            "document_stalled_giving_up")
        fail_document(self.rt, doc, Stalled(
            f"no progress for {stall:.0f} s, {attempts} times: its work was lost each "
            "time (a worker crashing on it, or Redis losing its queues)"), doc.plan())
        return 1

    def _requeue(self, doc: Doc, attempts: int) -> None:
        logger = log.get(doc_id=doc.doc_id, watch=doc.watch.name, attempts=attempts)
        stall = self.rt.cfg.stall_timeout
        ensure_live(self.rt, doc, doc.plan())
        task_id = str(uuid.uuid4())
        # Recorded before the send, never creating the record again: the task may run and
        # end the document (removing its record) before a write after the send.
        DispatchNote(task_id, iso(self.clock.time()), attempts + 1).save(doc.dp.dispatch,
                                                                          durable=True)
        self.rt.store.set_doc(doc.doc_id, task_id=task_id, requeued_at=iso(self.clock.time()))
        self.requeue(doc.watch.name, doc.doc_id, task_id)
        logger.warning("document_requeued", reason=f"no progress for {stall:.0f} s",
                       task_id=task_id)
