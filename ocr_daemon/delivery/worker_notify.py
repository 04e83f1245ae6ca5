"""sd_notify for `ocr-daemon worker`: READY=1 when Celery consumes, WATCHDOG=1 on heartbeats."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from celery import signals

from ocr_daemon import log
from ocr_daemon.service import sdnotify

# Celery sends a worker heartbeat every 2 s by default (celery.worker.heartbeat.Heart).
DEFAULT_HEARTBEAT = 2.0


def managed_here(environ: Mapping[str, str] = os.environ) -> bool:
    """True when a service manager listens and this is the process it started.

    systemd sets $SYSTEMD_EXEC_PID to the PID it spawned; a worker started by `ocr-daemon run`
    inherits the variables of its parent and must not announce itself as the service.
    """
    if not environ.get("NOTIFY_SOCKET"):
        return False
    exec_pid = environ.get("SYSTEMD_EXEC_PID", "")
    return not exec_pid or exec_pid == str(os.getpid())


def heartbeat_interval(environ: Mapping[str, str] = os.environ) -> int | None:
    """A heartbeat interval (whole seconds, as Celery takes it) for short $WATCHDOG_USEC.

    Celery beats every 2 s; below a watchdog of 8 s beat every second instead. systemd's
    WatchdogSec= should stay at 4 s or more (the units use 60 s).
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    return 1 if int(usec) < 4 * DEFAULT_HEARTBEAT * 1e6 else None


class WorkerNotifier:
    """Connects Celery's worker signals to the notify protocol, in the main process only.

    - READY=1 on ``worker_ready``: the consumer is connected to the broker and consuming.
    - WATCHDOG=1 on ``heartbeat_sent``: the heartbeat runs on the consumer's event loop timer
      (the hub, for the prefork pool), so it stops when that loop hangs or loses the broker.
    - STOPPING=1 on ``worker_shutting_down`` (SIGTERM: warm shutdown, running tasks finish).
    """

    def __init__(self, queues: list[str]) -> None:
        self.pid = os.getpid()
        self.queues = queues
        self.enabled = managed_here()
        self.watchdog = sdnotify.Watchdog()
        self.ready = False
        self.stopping = False

    def _mine(self) -> bool:
        return self.enabled and os.getpid() == self.pid

    def on_ready(self, sender: Any = None, **_: Any) -> None:
        if self._mine():
            hostname = getattr(sender, "hostname", "")
            sdnotify.notify("READY=1", f"STATUS=consuming {','.join(self.queues)} as {hostname}")
            log.get().info("worker_ready_notified", queues=self.queues)
            self.ready = True
            self.watchdog.ping()

    def on_heartbeat(self, sender: Any = None, **_: Any) -> None:
        if self._mine() and self.ready and not self.stopping:
            self.watchdog.ping()

    def on_shutting_down(self, sender: Any = None, how: str = "", **_: Any) -> None:
        self.stop(f"STATUS={(how or 'warm').lower()} shutdown: waiting for running tasks")

    def stop(self, status: str = "STATUS=stopped") -> None:
        if self._mine() and not self.stopping:
            self.stopping = True
            sdnotify.notify("STOPPING=1", status)

    def connect(self) -> WorkerNotifier:
        """Connect the receivers; call before the worker starts (Heart checks at creation)."""
        if self.enabled:
            uid = "ocr_daemon.delivery.worker_notify"
            signals.worker_ready.connect(self.on_ready, weak=False, dispatch_uid=uid)
            signals.heartbeat_sent.connect(self.on_heartbeat, weak=False, dispatch_uid=uid)
            signals.worker_shutting_down.connect(self.on_shutting_down, weak=False,
                                                 dispatch_uid=uid)
        return self
