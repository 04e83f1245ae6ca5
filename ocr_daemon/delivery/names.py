"""The names senders and workers agree on: task names, queues, routes, kombu's queue keys.

No Celery import: the watcher and the commands send by these names, and config.py takes its
queue names from here. Task names are explicit strings that never change with the code
(messages already queued carry them).
"""

from __future__ import annotations

from typing import Literal, get_args

QueueName = Literal["documents", "chunks", "default"]
QUEUES: tuple[QueueName, ...] = get_args(QueueName)

PROCESS_DOCUMENT = "ocr_daemon.process_document"
PROCESS_CHUNK = "ocr_daemon.process_chunk"
# The callback of a window of chunks (tasks.window_done): named before it was renamed.
WINDOW_DONE = "ocr_daemon.aggregate_chunks"
SEND_WEBHOOK = "ocr_daemon.send_webhook"

ROUTES: dict[str, dict[str, QueueName]] = {
    PROCESS_DOCUMENT: {"queue": "documents"},
    WINDOW_DONE: {"queue": "documents"},
    PROCESS_CHUNK: {"queue": "chunks"},
    SEND_WEBHOOK: {"queue": "default"},
}
DEFAULT_QUEUE: QueueName = "default"

# Every module that defines tasks, registered explicitly on the app (Celery's include).
TASK_MODULES = ("ocr_daemon.delivery.tasks", "ocr_daemon.delivery.webhook")

PRIORITY_SEP = "\x06\x16"  # kombu's separator for priority sub-queues


def queue_keys(prefix: str, queue: str) -> list[str]:
    """The Redis lists kombu keeps one queue in: the queue and its priority sub-queues."""
    return [f"{prefix}{queue}", *(f"{prefix}{queue}{PRIORITY_SEP}{n}" for n in range(1, 10))]
