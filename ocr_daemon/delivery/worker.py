"""`ocr-daemon worker`: a Celery worker of our app with the configured pool and queues."""

from __future__ import annotations

import os

from ocr_daemon import celery_app, log
from ocr_daemon.config import Config
from ocr_daemon.delivery.worker_notify import WorkerNotifier, heartbeat_interval
from ocr_daemon.errors import ExitCode
from ocr_daemon.record.layout import create_folders


def worker_argv(cfg: Config, queues: list[str] | None, concurrency: int | None,
                pool: str | None, name: str | None) -> list[str]:
    w = cfg.workers
    argv = [
        "worker",
        "--queues", ",".join(queues or w.queues),
        "--pool", pool or w.pool,
        "--concurrency", str(concurrency or w.concurrency or os.cpu_count() or 1),
        "--loglevel", cfg.logging.level.upper(),
        "--without-mingle",
        "--without-gossip",
        "--hostname", name or f"ocrd-{os.getpid()}@%h",
    ]
    beat = heartbeat_interval()  # the heartbeat drives WATCHDOG=1: beat faster than it asks
    if beat is not None:
        argv += ["--heartbeat-interval", str(beat)]
    return argv


def run_worker(cfg: Config, queues: list[str] | None = None, concurrency: int | None = None,
               pool: str | None = None, name: str | None = None) -> ExitCode:
    # Tesseract uses one thread per process: parallelism comes from the worker pool.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    create_folders(cfg)  # loading the configuration creates nothing
    app = celery_app.configure(cfg)
    # READY=1, WATCHDOG=1 and STOPPING=1 to systemd ($NOTIFY_SOCKET), from Celery's signals.
    notifier = WorkerNotifier(list(queues or cfg.workers.queues)).connect()
    try:
        quiet = ["--quiet"] if log.uses_json(cfg.logging.format) else []  # no banner in JSON
        app.worker_main([*quiet, *worker_argv(cfg, queues, concurrency, pool, name)])
    finally:
        notifier.stop()
    return ExitCode.OK
