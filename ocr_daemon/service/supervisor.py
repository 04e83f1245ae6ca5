"""`ocr-daemon run` and `watch`: start Redis, workers and the watcher; stop them cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from ocr_daemon import celery_app, log, redis_conn, runtime
from ocr_daemon.config import Config
from ocr_daemon.delivery import broker, webhook
from ocr_daemon.errors import ExitCode
from ocr_daemon.intake.dispatch import Dispatcher, celery_sender
from ocr_daemon.intake.reaper import Reaper
from ocr_daemon.intake.watcher import Watcher
from ocr_daemon.record.layout import WatchPaths, create_folders
from ocr_daemon.service import metrics, sdnotify
from ocr_daemon.service.embedded_redis import EmbeddedRedis
from ocr_daemon.service.procs import die_with_parent, instance_lock

RESTART_DELAY = 2.0


class Stopper:
    """SIGTERM/SIGINT set the stop event; a second signal asks for a fast (cold) stop."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signals = 0

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1
        log.get().info("stop_requested", signal=signal.Signals(signum).name, count=self.signals)
        self.event.set()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)


class WorkerProcess:
    """One `ocr-daemon worker` child (or another command: `api`), restarted when it dies."""

    def __init__(self, cfg: Config, url: str, index: int, command: str = "worker") -> None:
        assert cfg.source is not None
        self.argv = [sys.executable, "-m", "ocr_daemon", command, "--config", str(cfg.source)]
        if command == "worker":
            self.argv += ["--name", f"ocrd{index}-{os.getpid()}@%h"]
        # NOTIFY_SOCKET is ours: a worker must not announce READY on behalf of `run`.
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        self.env.update(OCR_DAEMON__REDIS__URL=url, OMP_THREAD_LIMIT="1")
        self.proc: subprocess.Popen[bytes] | None = None
        self.died_at: float | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent)
        log.get().info("worker_started", pid=self.proc.pid)

    def check(self) -> None:
        if self.proc is None or self.proc.poll() is None:
            return
        now = time.monotonic()
        if self.died_at is None:
            log.get().warning("worker_died", pid=self.proc.pid, returncode=self.proc.returncode)
            self.died_at = now
        elif now - self.died_at >= RESTART_DELAY:
            self.died_at = None
            self.start()

    def stop(self, cold: bool) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT if cold else signal.SIGTERM)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _stop_workers(workers: list[WorkerProcess], stopper: Stopper, grace: float) -> None:
    """Warm shutdown (running tasks finish); another Ctrl-C or the grace period makes it cold."""
    log.get().info("stopping_workers", workers=len(workers))
    for worker in workers:
        worker.stop(cold=stopper.signals > 1)
    deadline = time.monotonic() + grace
    cold_sent = stopper.signals > 1
    while any(w.running() for w in workers) and time.monotonic() < deadline:
        if stopper.signals > 1 and not cold_sent:
            log.get().info("cold_stop")
            for worker in workers:
                worker.stop(cold=True)
            cold_sent = True
        time.sleep(0.1)
    for worker in workers:
        worker.wait(5)


def _watch_loop(cfg: Config, url: str, stopper: Stopper,
                on_tick: Callable[[], None] | None = None,
                ready: Callable[[], bool] = lambda: True) -> None:
    """Start the watcher, announce READY=1 once ``ready()`` holds, loop until stopped."""
    app = celery_app.configure(cfg, url)
    rt = runtime.build(cfg, on_end=[webhook.notifier(app)])  # endings of duplicates skipped
    send = celery_sender(app)
    dispatcher = Dispatcher(rt, send)
    reaper = Reaper(rt, send, rt.clock, app)
    watcher = Watcher(cfg.watches, dispatcher, rt.clock, reaper,
                      reap_interval=min(30.0, cfg.stall_timeout / 4))
    watcher.start()
    for w in cfg.watches:
        log.get(watch=w.name).info("watching", inbox=str(WatchPaths.of(w).inbox),
                                   engine=w.engine)
    watchdog = sdnotify.Watchdog()
    announced = False
    metrics_server = metrics.serve(cfg, rt.store)  # None unless metrics.enabled

    def tick() -> None:
        nonlocal announced
        if on_tick is not None:
            on_tick()
        if not announced and ready():
            announced = True
            sdnotify.notify("READY=1", "STATUS=watching " + ", ".join(
                str(WatchPaths.of(w).inbox) for w in cfg.watches))
            log.get().info("ready")
        watchdog.ping()

    try:
        watcher.loop(stopper.event, tick)
    finally:
        sdnotify.notify("STOPPING=1")
        metrics.stop(metrics_server)


class WorkersReady:
    """Asks the workers for a ping in the background until every one has answered."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.done = threading.Event()
        threading.Thread(target=self._poll, name="workers-ready", daemon=True).start()

    def _poll(self) -> None:
        while not self.done.is_set():
            try:
                # limit: return as soon as every worker answered, not after the timeout
                replies = celery_app.app.control.ping(timeout=0.5, limit=self.expected)
            except Exception:  # boundary: the broker may not be reachable yet
                replies = []
            if len(replies) >= self.expected:
                self.done.set()
            else:
                time.sleep(0.2)

    def __call__(self) -> bool:
        return self.done.is_set()


def run(cfg: Config) -> ExitCode:
    """Everything on one host: embedded Redis (if configured), workers, watcher."""
    create_folders(cfg)
    stopper = Stopper()
    stopper.install()
    with instance_lock(cfg.state_dir / "run.lock"):
        redis_server: EmbeddedRedis | None = None
        if cfg.redis.url == "embedded":
            redis_server = EmbeddedRedis(cfg.state_dir, redis_conn.embedded_url_file(cfg))
            url = redis_server.start()
            # Our Redis, and no worker of ours runs yet: messages left unacknowledged were held
            # by processes that died with us (a power cut). Hand them back now.
            celery_app.configure(cfg, url)
            restored = broker.restore_all(celery_app.app, redis_conn.client(url),
                                          cfg.redis.key_prefix)
            if restored:
                log.get().warning("messages_restored", count=restored, reason="unclean stop")
        else:
            url = cfg.redis.url
        workers = [WorkerProcess(cfg, url, 0)]
        expected = len(workers)  # Celery workers to answer a ping before READY=1
        if cfg.api.enabled:  # the HTTP API and page: a child like the worker, restarted too
            workers.append(WorkerProcess(cfg, url, 1, command="api"))
        for worker in workers:
            worker.start()

        def tick() -> None:
            if redis_server is not None and not redis_server.alive() and not stopper.event.is_set():
                log.get().warning("redis_died_restarting")
                redis_server.start()
            for worker in workers:
                worker.check()

        try:
            celery_app.configure(cfg, url)
            _watch_loop(cfg, url, stopper, tick, WorkersReady(expected))
        finally:
            _stop_workers(workers, stopper, grace=cfg.workers.time_limit + 30)
            if redis_server is not None:
                redis_server.stop()
    log.get().info("stopped")
    return ExitCode.OK


def watch(cfg: Config) -> ExitCode:
    """The watcher alone (one systemd unit), against an external or already-running Redis."""
    create_folders(cfg)
    stopper = Stopper()
    stopper.install()
    url = redis_conn.resolve_url(cfg)
    with contextlib.suppress(KeyboardInterrupt):
        _watch_loop(cfg, url, stopper)
    return ExitCode.OK
