"""The Celery app `ocr_daemon.celery_app`: Redis broker and backend, JSON only, our queues.

Importing this module configures nothing (no config file read, no transport patched). The
app takes its settings in one of two ways, and installs the broker transport fix
(delivery.transport) first either way:

- ``configure(cfg, url)``: the explicit step of our own entry points (`ocr-daemon run`,
  `watch`, `worker`, `status`, `cancel`), before they send or consume anything;
- otherwise when Celery first reads its configuration (``Loader.read_configuration``,
  Celery's loader hook): `celery -A ocr_daemon.celery_app worker|inspect|flower` then loads
  the file named by $OCR_DAEMON_CONFIG.

The task modules are registered explicitly (``names.TASK_MODULES``: Celery's include), and
senders use task names (``delivery.names``), never the task objects.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.loaders.app import AppLoader
from kombu.entity import Queue

from ocr_daemon import redis_conn
from ocr_daemon.config import CONFIG_ENV, Config, load
from ocr_daemon.delivery import transport as broker_transport
from ocr_daemon.delivery.names import DEFAULT_QUEUE, QUEUES, ROUTES, TASK_MODULES


class Loader(AppLoader):  # type: ignore[misc]  # Celery ships no type information
    """Celery's configuration hook: the settings of $OCR_DAEMON_CONFIG, read when Celery
    first needs its configuration, unless ``configure`` came first."""

    def read_configuration(self, env: str = "CELERY_CONFIG_MODULE") -> dict[str, Any]:
        global _config
        if _config is not None or not os.environ.get(CONFIG_ENV):
            return {}  # configured explicitly (its settings follow), or nothing to read
        _config = load()
        broker_transport.install()
        return settings(_config)


app = Celery("ocr_daemon", include=list(TASK_MODULES), loader=Loader)
_config: Config | None = None


def configure(cfg: Config, url: str | None = None) -> Celery:
    """Point the app at the configured Redis and apply our delivery settings."""
    global _config
    _config = cfg
    broker_transport.install()  # before any broker connection exists
    app.conf.update(settings(cfg, url))
    return app


def settings(cfg: Config, url: str | None = None) -> dict[str, Any]:
    """The Celery settings of ``cfg`` (``url``: the Redis to use instead of redis.url)."""
    broker = redis_conn.celery_url(url or redis_conn.resolve_url(cfg))
    w = cfg.workers
    # A message that waits for a retry countdown stays unacknowledged in its worker: the
    # visibility timeout must outlast the hard time limit plus the longest countdown.
    visibility = int(w.time_limit + w.retry_backoff_max + 60)
    sentinel = redis_conn.celery_transport_options(cfg.redis)
    transport = {"visibility_timeout": visibility, "global_keyprefix": cfg.redis.key_prefix,
                 **sentinel}
    return dict(
        broker_url=broker,
        result_backend=broker,
        broker_transport_options=transport,
        result_backend_transport_options={"global_keyprefix": cfg.redis.key_prefix,
                                          **sentinel},
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(q) for q in QUEUES],
        task_default_queue=DEFAULT_QUEUE,
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


def current_config() -> Config:
    if _config is None:
        configure(load())
    assert _config is not None
    return _config

