"""Redis locks with our errors; a renewed lock is kept alive while its holder lives."""

from __future__ import annotations

import contextlib
import threading

import redis
import redis.lock

from ocr_daemon.errors import ServiceUnavailable
from ocr_daemon.redis_conn import unavailable


class Lock:
    """redis-py's lock with our errors; releasing a lock that has expired is not an error.

    ``renewed``: while held, a thread resets its expiry every third of its timeout, so a
    short timeout bounds how long a killed holder blocks the others (a worker killed in the
    middle of an ending), however long a live holder takes (a searchable PDF's join)."""

    def __init__(self, inner: redis.lock.Lock, renewed: bool = False) -> None:
        self.inner = inner
        self.renewed = renewed
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def acquire(self, blocking: bool = True) -> bool:
        with unavailable():
            taken = bool(self.inner.acquire(blocking=blocking))
        if taken and self.renewed:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._renew, args=(self._stop,),
                                            name="ocrd-lock-renew", daemon=True)
            self._thread.start()
        return taken

    def _renew(self, stop: threading.Event) -> None:
        period = float(self.inner.timeout or 30.0) / 3
        while not stop.wait(period):
            try:
                self.inner.reacquire()
            except (redis.exceptions.LockError, redis.RedisError):
                return  # lost, or Redis away: it expires; the next holder's steps are idempotent

    def release(self) -> None:
        if self._stop is not None and self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._stop = self._thread = None
        with contextlib.suppress(redis.exceptions.LockError), unavailable():
            self.inner.release()

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise ServiceUnavailable(f"could not take the lock {self.inner.name!r} in time")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()
