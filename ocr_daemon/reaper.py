"""The reaper: documents whose work was lost are queued again from disk, or failed after a cap.

A document is *lost* when it has made no progress for `stall_timeout` seconds (its Redis
state, result files and dispatch record all unchanged) and no message of it is left in the
broker (queued, or held unacknowledged by a worker). That covers a flushed or restarted
Redis, a lost message, and a worker killed past Celery's own redelivery. A document merely
waiting in a long queue is never touched.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import redis

from . import atomic, log
from .celery_app import QUEUES
from .clock import Clock, iso
from .docrecord import Doc, ensure_live
from .errors import OcrDaemonError, Stalled
from .finish import fail_document
from .layout import WatchPaths
from .manifest import Manifest
from .runtime import Runtime
from .state import PROCESSING

PRIORITY_SEP = "\x06\x16"  # kombu's separator for priority sub-queues


def broker_mentions(client: redis.Redis, prefix: str, doc_ids: set[str]) -> set[str]:
    """Which of ``doc_ids`` still have a message in a queue or unacknowledged by a worker."""
    if not doc_ids:
        return set()
    lists = [f"{prefix}{q}" for q in QUEUES]
    lists += [f"{prefix}{q}{PRIORITY_SEP}{n}" for q in QUEUES for n in range(1, 10)]
    pipe = client.pipeline()
    for key in lists:
        pipe.lrange(key, 0, -1)
    pipe.hvals(f"{prefix}unacked")
    found: set[str] = set()
    for batch in pipe.execute():
        for message in batch:
            for doc_id in doc_ids - found:
                if doc_id in message:
                    found.add(doc_id)
    return found


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
    def __init__(self, rt: Runtime, requeue: Callable[[str, str], str], clock: Clock) -> None:
        self.rt = rt
        self.requeue = requeue  # (watch, doc_id) -> task id: sends process_document
        self.clock = clock

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
            limit = cfg.stall_timeout if stall is None else stall
            if live and any(c.state == PROCESSING for c in live.chunks):
                limit = max(limit, cfg.workers.time_limit + 30)  # a long chunk is running
            if now - last_activity(doc, live_ts) > limit:
                found.append(doc)
        return found

    def reap(self, paths: WatchPaths, stall: float | None = None) -> int:
        """Queue lost documents again; fail those past max_document_attempts. Returns count.

        ``stall=0`` at start-up: every dispatched document with no message left is lost.
        """
        candidates = self.stalled(paths, stall)
        if not candidates:
            return 0
        alive = broker_mentions(self.rt.store.r, self.rt.cfg.redis.key_prefix,
                                {d.doc_id for d in candidates})
        done = 0
        for doc in candidates:
            if doc.doc_id in alive:
                continue
            lock = self.rt.store.lock(f"reap:{doc.doc_id}", timeout=60)
            if not lock.acquire(blocking=False):
                continue  # another watcher is reaping it
            try:
                done += self._reap_one(doc)
            except OcrDaemonError as exc:
                log.get(doc_id=doc.doc_id).warning("reap_failed", **exc.to_dict())
            finally:
                lock.release()
        return done

    def _reap_one(self, doc: Doc) -> int:
        record = atomic.read_json(doc.dp.dispatch)
        attempts = int(record.get("attempts", 1))
        logger = log.get(doc_id=doc.doc_id, watch=doc.watch.name, attempts=attempts)
        stall = self.rt.cfg.stall_timeout
        if attempts >= self.rt.cfg.max_document_attempts:
            logger.error("document_stalled_giving_up")
            fail_document(self.rt, doc, Stalled(
                f"no progress for {stall:.0f} s, {attempts} times: its work was lost each "
                "time (a worker crashing on it, or Redis losing its queues)"), doc.plan())
            return 1
        ensure_live(self.rt, doc, doc.plan())
        task_id = self.requeue(doc.watch.name, doc.doc_id)
        atomic.write_json(doc.dp.dispatch, {
            **record, "task_id": task_id, "queued_at": iso(self.clock.time()),
            "attempts": attempts + 1,
        })
        self.rt.store.set_doc(doc.doc_id, task_id=task_id, requeued_at=iso(self.clock.time()))
        logger.warning("document_requeued", reason=f"no progress for {stall:.0f} s",
                       task_id=task_id)
        return 1
