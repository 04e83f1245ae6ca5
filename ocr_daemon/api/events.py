"""Live document events for Server-Sent Events: one thread watches the documents that clients
follow (one Redis round trip per tick for all of them) and hands each change to every
subscriber's queue; a document's stream ends once its last file is written."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from ocr_daemon import log
from ocr_daemon.errors import OcrDaemonError
from ocr_daemon.record.state import StateStore

View = Callable[[str], dict[str, Any]]


@dataclass
class _Followed:
    queues: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, Any]]]] = field(
        default_factory=list)
    version: str | None = None
    last: dict[str, Any] | None = None


class EventHub:
    """Follows documents while someone listens. Changes closer together than ``interval``
    reach a client as one event with the latest state."""

    def __init__(self, store: StateStore, view: View, interval: float = 0.1) -> None:
        self.store = store
        self.view = view
        self.interval = interval
        self.lock = threading.Lock()
        self.followed: dict[str, _Followed] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="api-events", daemon=True)
        self.thread.start()

    @property
    def listeners(self) -> int:
        with self.lock:
            return sum(len(f.queues) for f in self.followed.values())

    def subscribe(self, doc_id: str) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        with self.lock:
            followed = self.followed.setdefault(doc_id, _Followed())
            followed.queues.append((loop, queue))
            if followed.last is not None:  # the state others already saw: start from it
                queue.put_nowait(followed.last)
        return queue

    def unsubscribe(self, doc_id: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        with self.lock:
            followed = self.followed.get(doc_id)
            if followed is None:
                return
            followed.queues = [(lp, q) for lp, q in followed.queues if q is not queue]
            if not followed.queues:
                del self.followed[doc_id]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.tick()
            except (OcrDaemonError, redis.RedisError) as exc:
                log.get().warning("api_events_tick_failed", error=str(exc))

    def tick(self) -> None:
        with self.lock:
            ids = list(self.followed)
        if not ids:
            return
        try:
            versions = self.store.r.mget([self.store.version_key(i) for i in ids])
        except redis.RedisError as exc:
            log.get().warning("api_events_redis", error=str(exc))
            return
        for doc_id, raw in zip(ids, versions, strict=True):
            version = None if raw is None else str(raw)
            with self.lock:
                followed = self.followed.get(doc_id)
                if followed is None:
                    continue
                unchanged = followed.version == version and followed.last is not None
                # ended in Redis, its last file not written yet: look again until it is
                ending = followed.last is not None and bool(followed.last.get("ending"))
            if unchanged and not ending:
                continue
            with contextlib.suppress(OcrDaemonError):
                current = self.view(doc_id)
                self._deliver(doc_id, version, current)

    def _deliver(self, doc_id: str, version: str | None, current: dict[str, Any]) -> None:
        with self.lock:
            followed = self.followed.get(doc_id)
            if followed is None:
                return
            followed.version = version
            if followed.last is not None and _same(followed.last, current):
                return
            followed.last = current
            targets = list(followed.queues)
        for loop, queue in targets:
            with contextlib.suppress(RuntimeError):  # its loop has closed: client gone
                loop.call_soon_threadsafe(queue.put_nowait, current)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("state", "ended", "progress_percentage", "chunks", "error", "waiting")
    return all(a.get(k) == b.get(k) for k in keys)
