"""The ending lock: a live holder keeps it past its timeout; a dead one frees it soon."""

from __future__ import annotations

import time

from ocr_daemon.clock import SystemClock
from ocr_daemon.record.state import StateStore

from .conftest import RedisServer


def store(redis_server: RedisServer, key_prefix: str) -> StateStore:
    return StateStore(redis_server.client(), key_prefix, 3600, SystemClock())


def test_a_renewed_lock_is_kept_past_its_timeout_while_its_holder_lives(
        redis_server: RedisServer, key_prefix: str) -> None:
    s = store(redis_server, key_prefix)
    held = s.lock("aggregate:doc", timeout=0.6, wait=0, renewed=True)
    assert held.acquire()
    time.sleep(1.5)  # two and a half timeouts
    assert not s.lock("aggregate:doc", timeout=0.6, wait=0, renewed=True).acquire(
        blocking=False)
    held.release()
    other = s.lock("aggregate:doc", timeout=0.6, wait=0, renewed=True)
    assert other.acquire(blocking=False)
    other.release()


def test_a_lock_whose_holder_died_is_free_after_its_timeout(
        redis_server: RedisServer, key_prefix: str) -> None:
    s = store(redis_server, key_prefix)
    dead = s.lock("aggregate:doc", timeout=0.6, wait=0, renewed=True)
    assert dead.acquire()
    assert dead._stop is not None
    dead._stop.set()  # the holder's process is gone: nothing renews it, nothing releases it
    assert not s.lock("aggregate:doc", timeout=0.6, wait=0).acquire(blocking=False)
    time.sleep(0.9)
    assert s.lock("aggregate:doc", timeout=0.6, wait=0).acquire(blocking=False)
