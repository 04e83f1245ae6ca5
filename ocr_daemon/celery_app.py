"""The Celery app `ocr_daemon.celery_app`: Redis broker and backend, JSON only, our queues.

`celery -A ocr_daemon.celery_app ...` works with $OCR_DAEMON_CONFIG pointing at the config.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu.entity import Queue

from ocr_daemon import redis_conn
from ocr_daemon.config import CONFIG_ENV, Config, load
from ocr_daemon.delivery import transport as broker_transport

QUEUES = ("documents", "chunks", "default")
ROUTES = {
    "ocr_daemon.process_document": {"queue": "documents"},
    "ocr_daemon.aggregate_chunks": {"queue": "documents"},
    "ocr_daemon.process_chunk": {"queue": "chunks"},
}

broker_transport.install()
app = Celery("ocr_daemon", include=["ocr_daemon.delivery.tasks"])
_config: Config | None = None


def configure(cfg: Config, url: str | None = None) -> Celery:
    """Point the app at the configured Redis and apply our delivery settings."""
    global _config
    _config = cfg
    broker = redis_conn.celery_url(url or redis_conn.resolve_url(cfg))
    w = cfg.workers
    # A message that waits for a retry countdown stays unacknowledged in its worker: the
    # visibility timeout must outlast the hard time limit plus the longest countdown.
    visibility = int(w.time_limit + w.retry_backoff_max + 60)
    sentinel = redis_conn.celery_transport_options(cfg.redis)
    transport = {"visibility_timeout": visibility, "global_keyprefix": cfg.redis.key_prefix,
                 **sentinel}
    app.conf.update(
        broker_url=broker,
        result_backend=broker,
        broker_transport_options=transport,
        result_backend_transport_options={"global_keyprefix": cfg.redis.key_prefix,
                                          **sentinel},
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(q) for q in QUEUES],
        task_default_queue="default",
        task_routes=ROUTES,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=w.soft_time_limit,
        task_time_limit=w.time_limit,
        result_expires=cfg.state_ttl,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # Stopping: running tasks get shutdown_grace seconds, then go back to the queue, and
        # tasks waiting for a retry countdown go back at once (Celery's soft shutdown).
        worker_soft_shutdown_timeout=w.shutdown_grace,
        worker_enable_soft_shutdown_on_idle=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # No task events unless a monitor asks: they cost the consumer about 2 ms of CPU per
        # document (bench/overhead.py). Flower turns them on when it starts (its
        # enable_events option); `celery control enable_events` for `celery events`.
        # Worker heartbeats are sent either way (they drive WATCHDOG=1).
        worker_send_task_events=False,
        enable_utc=True,
    )
    return app


def current_config() -> Config:
    if _config is None:
        configure(load())
    assert _config is not None
    return _config


if os.environ.get(CONFIG_ENV):  # `celery -A ocr_daemon.celery_app` and worker processes
    configure(load())
