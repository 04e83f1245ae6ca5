"""Our view of Celery's Redis broker: which documents still have messages, which unacknowledged
messages belong to no live worker, and handing those back to their queues."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from ocr_daemon import log
from ocr_daemon.delivery.names import QUEUES, queue_keys

if TYPE_CHECKING:
    from celery import Celery


@dataclass(frozen=True)
class Unacked:
    tag: str  # kombu's delivery tag (the key in the unacked hash)
    task_id: str
    delivered_at: float
    message: str  # the raw entry, searched for document ids


def unacked(client: redis.Redis, prefix: str) -> list[Unacked]:
    """Messages delivered to a worker and not yet acknowledged (running, or waiting for an
    ETA/countdown, or held by a worker that died)."""
    pipe = client.pipeline()
    pipe.hgetall(f"{prefix}unacked")
    pipe.zrange(f"{prefix}unacked_index", 0, -1, withscores=True)
    entries, index = pipe.execute()
    delivered = {str(tag): float(score) for tag, score in index}
    out = []
    for tag, raw in entries.items():
        try:
            payload = json.loads(raw)[0]
            task_id = str(payload["headers"]["id"])
        except (ValueError, KeyError, IndexError, TypeError):
            continue
        out.append(Unacked(str(tag), task_id, delivered.get(str(tag), 0.0), str(raw)))
    return out


def mentions(client: redis.Redis, prefix: str, doc_ids: set[str]) -> tuple[set[str], list[Unacked]]:
    """Which ``doc_ids`` wait in a queue, and the unacknowledged messages that name them."""
    if not doc_ids:
        return set(), []
    pipe = client.pipeline()
    for key in (k for q in QUEUES for k in queue_keys(prefix, q)):
        pipe.lrange(key, 0, -1)
    queued: set[str] = set()
    for batch in pipe.execute():
        for message in batch:
            queued |= {d for d in doc_ids - queued if d in message}
    held = [u for u in unacked(client, prefix) if any(d in u.message for d in doc_ids)]
    return queued, held


def live_task_ids(app: Celery, timeout: float = 2.0) -> set[str] | None:
    """Ids of tasks every answering worker is running, holding or has scheduled; None when
    no worker answered (then nothing can be said about any message)."""
    inspect = app.control.inspect(timeout=timeout)
    try:
        replies = [inspect.active(), inspect.reserved(), inspect.scheduled()]
    except Exception as exc:  # boundary: the broadcast needs the broker
        log.get().warning("inspect_failed", error=str(exc))
        return None
    if not any(replies):
        return None
    ids: set[str] = set()
    for reply in replies:
        for tasks in (reply or {}).values():
            for task in tasks:
                info: dict[str, Any] = task.get("request", task)
                ids.add(str(info.get("id")))
    return ids


def restore(app: Celery, tags: list[str]) -> int:
    """Hand unacknowledged messages back to the front of their queues (kombu's own restore)."""
    if not tags:
        return 0
    with app.connection_for_write() as conn:
        qos = conn.default_channel.qos
        for tag in tags:
            qos.restore_by_tag(tag, leftmost=True)
    return len(tags)


def restore_all(app: Celery, client: redis.Redis, prefix: str) -> int:
    """At the start of `ocr-daemon run` on its embedded Redis, every worker is ours and none is
    running yet: whatever is unacknowledged was held by a process that died (a power cut)."""
    return restore(app, [u.tag for u in unacked(client, prefix)])
