"""What `ocr-daemon status` shows: documents in flight, queues, workers, failures, engine flags."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from ocr_daemon.clock import iso
from ocr_daemon.config import WatchConfig
from ocr_daemon.delivery.names import QUEUES, queue_keys
from ocr_daemon.engines.gemini import batch as gemini_batch
from ocr_daemon.engines.gemini import guard as gemini_guard
from ocr_daemon.engines.gemini import usage as gemini_usage
from ocr_daemon.errors import ServiceUnavailable
from ocr_daemon.intake import leftovers
from ocr_daemon.record.progress import percentage
from ocr_daemon.record.state import (
    CANCELLED,
    CHUNK_STATES,
    FAILED,
    RECENT_MAX,
    DocState,
    StateStore,
    read_status,
)
from ocr_daemon.redis_conn import unavailable

if TYPE_CHECKING:
    from celery import Celery

POOLS = {"prefork": "prefork", "thread": "threads", "solo": "solo", "gevent": "gevent",
         "eventlet": "eventlet"}


@dataclass
class Status:
    """One look at the fleet; ``to_dict`` is the `status --json` object."""

    documents: list[dict[str, Any]]
    queues: dict[str, dict[str, int]]
    workers: list[dict[str, Any]] | None  # None: not asked
    recent_failures: list[dict[str, Any]]
    engines: dict[str, Any]
    generated_at: str
    inbox: dict[str, Any] = field(default_factory=dict)  # entries left alone, and counts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def document(live: DocState) -> dict[str, Any]:
    """A document in flight: its progress, chunk counts and the errors of its chunks now."""
    chunks = live.chunks
    counts = Counter(c.state for c in chunks)
    f = live.fields
    return {
        "doc_id": live.doc_id,
        "watch": f.get("watch"),
        "name": f.get("name"),
        "state": live.state,
        "progress_percentage": percentage(live.state, chunks),
        "chunks": {"total": len(chunks), **{s: counts.get(s, 0) for s in CHUNK_STATES}},
        "errors": [{"chunk": c.index, "pages": c.pages, "state": c.state,
                    "attempts": c.attempts, "code": c.error.get("code"),
                    "message": c.error.get("message")} for c in chunks if c.error],
        "waiting": json.loads(f["waiting"]) if f.get("waiting") else None,  # disk full...
        "task_id": f.get("task_id"),
        "created_at": f.get("created_at"),
        "started_at": f.get("started_at"),
        "updated_at": f.get("updated_at"),
    }


def documents(store: StateStore) -> list[dict[str, Any]]:
    docs = [document(d) for d in read_status(store)]
    return sorted(docs, key=lambda d: (d["created_at"] or "", d["doc_id"]))


def recent_failures(store: StateStore, limit: int = 10) -> list[dict[str, Any]]:
    """Recently ended documents that failed or were cancelled, newest first."""
    ids = list(dict.fromkeys(store.recent(RECENT_MAX)))  # an ending may be recorded twice
    fields = ["state", "watch", "name", "error", "finished_at"]
    with unavailable():
        pipe = store.r.pipeline(transaction=False)
        for doc_id in ids:
            pipe.hmget(store.doc_key(doc_id), fields)
        rows = pipe.execute() if ids else []
    out: list[dict[str, Any]] = []
    for doc_id, (state, watch, name, error, finished_at) in zip(ids, rows, strict=True):
        if state not in (FAILED, CANCELLED):
            continue  # completed, or its state has expired (state_ttl)
        err = json.loads(error) if error else {}
        out.append({"doc_id": doc_id, "watch": watch, "name": name, "state": state,
                    "code": err.get("code"), "message": err.get("message"),
                    "finished_at": finished_at})
        if len(out) >= limit:
            break
    return out


def queue_depths(client: redis.Redis, prefix: str) -> dict[str, dict[str, int]]:
    """Messages waiting in each Celery queue (priority sub-queues included) and those a
    worker has taken and not yet acknowledged (running, or waiting for a retry countdown)."""
    names = {q: queue_keys(prefix, q) for q in QUEUES}
    with unavailable():
        pipe = client.pipeline(transaction=False)
        for keys in names.values():
            for key in keys:
                pipe.llen(key)
        pipe.hvals(f"{prefix}unacked")
        *lengths, unacked = pipe.execute()
    held: Counter[str] = Counter()
    for raw in unacked:
        try:
            held[str(json.loads(raw)[2])] += 1  # [message, exchange, routing_key]
        except (ValueError, IndexError, TypeError):
            held["?"] += 1
    out: dict[str, dict[str, int]] = {}
    for i, q in enumerate(QUEUES):
        per = len(names[q])
        out[q] = {"waiting": sum(lengths[i * per:(i + 1) * per]), "unacked": held.pop(q, 0)}
    for other, count in held.items():
        out.setdefault(other, {"waiting": 0, "unacked": 0})["unacked"] += count
    return out


def engines(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Engine-wide flags: Gemini disabled (key rejected, configuration refused) or paused
    (daily quota); today's usage and the batch jobs."""
    with unavailable():
        flags = gemini_guard.status(client, prefix)
        today = gemini_usage.today(client, prefix)
        batch = gemini_batch.status(client, prefix)
    state = ("disabled" if flags["disabled"] or flags["refused"]
             else "paused" if flags["paused"] else "ok")
    return {"gemini": {"state": state, **flags, "today": today, "batch": batch}}


def _pool(stats: dict[str, Any]) -> str:
    impl = str(stats.get("pool", {}).get("implementation", ""))
    module = impl.split(":")[0].rsplit(".", 1)[-1]
    return POOLS.get(module, module or "?")


def workers(app: Celery, timeout: float = 1.0) -> list[dict[str, Any]]:
    """Workers that answer a broadcast within ``timeout`` seconds (works with Celery's
    --without-gossip --without-mingle: remote control stays on)."""

    def ask(command: str) -> dict[str, Any]:
        try:
            replies = app.control.broadcast(command, reply=True, timeout=timeout)
        except Exception as exc:  # boundary to kombu: the broker cannot be reached
            raise ServiceUnavailable(f"cannot ask the workers: {exc}") from exc
        return {name: answer for reply in replies or [] for name, answer in reply.items()}

    with ThreadPoolExecutor(3) as pool:
        stats, queues, active = pool.map(ask, ["stats", "active_queues", "active"])
    out = []
    for name in sorted(set(stats) | set(queues) | set(active)):
        s = stats.get(name) or {}
        out.append({
            "name": name,
            "pid": s.get("pid"),
            "pool": _pool(s),
            "concurrency": s.get("pool", {}).get("max-concurrency"),
            "queues": sorted(q["name"] for q in queues.get(name) or []),
            "active": len(active.get(name) or []),
            "processed": sum((s.get("total") or {}).values()),
            "uptime": s.get("uptime"),
        })
    return out


def inbox(watches: list[WatchConfig], now: float) -> dict[str, Any]:
    """Inbox entries the watcher leaves alone, and why (every watch's inbox read here)."""
    entries: list[dict[str, Any]] = []
    counts: dict[str, dict[str, int]] = {}
    for watch in watches:
        found, by_reason = leftovers.scan(watch, now)
        entries += [e.to_dict() for e in found]
        counts[watch.name] = dict(by_reason)
    return {"left_alone": entries, "counts": counts}


def gather(store: StateStore, app: Celery | None = None, worker_timeout: float = 1.0,
           failures: int = 10, watches: list[WatchConfig] | None = None) -> Status:
    """Everything `ocr-daemon status` shows; workers only when ``app`` is given, inbox
    entries left alone only for ``watches``."""
    client, prefix = store.r, store.prefix
    return Status(
        documents=documents(store),
        queues=queue_depths(client, prefix),
        workers=workers(app, worker_timeout) if app is not None else None,
        recent_failures=recent_failures(store, failures),
        engines=engines(client, prefix),
        generated_at=iso(store.clock.time()),
        inbox=inbox(watches or [], store.clock.time()),
    )
