"""A rate limiter in Redis shared by every worker on every host: requests and tokens per window.

Built on the ``limits`` package (not hand-written): its Redis moving-window strategy checks
and records a hit in one atomic Lua script, takes weighted hits (``cost``), and its windows
are exact (no burst of twice the quota at a window edge as with fixed windows). What we add
is the polite wait: sleep until the window has room, but never past a bound, then raise
TransientEngineError(retry_after) so the task is retried later instead of holding a worker.

A moving window keeps one list entry per unit of cost, so tokens are counted in units of
``ceil(tokens_per_window / 1000)`` tokens (rounded up per request: it errs on the safe side)
and the list never holds more than 1,000 entries. Entries carry the worker's clock: hosts
must be time-synchronised (NTP), as for Celery's countdowns.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import redis
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from ocr_daemon import redis_conn
from ocr_daemon.errors import TransientEngineError

MAX_TOKEN_SLOTS = 1000


class RateLimiter:
    """``requests`` and ``tokens`` per ``window`` seconds for one name (e.g. a model)."""

    def __init__(self, client: redis.Redis, prefix: str, name: str, *, requests: int,
                 tokens: int, window: int, sleep: Callable[[float], None] = time.sleep) -> None:
        # Our client's pool: same server, same options (unix socket, password, timeouts).
        storage = RedisStorage("redis://", connection_pool=client.connection_pool,
                               key_prefix=f"{prefix}ratelimit")
        self.limiter = MovingWindowRateLimiter(storage)
        self.name = name
        self.requests = RateLimitItemPerSecond(requests, window)
        self.token_unit = max(1, math.ceil(tokens / MAX_TOKEN_SLOTS))
        self.tokens = RateLimitItemPerSecond(max(1, tokens // self.token_unit), window)
        self.sleep = sleep

    @classmethod
    def per_minute(cls, client: redis.Redis, prefix: str, name: str, *, requests_per_minute: int,
                   tokens_per_minute: int, window: int = 60) -> RateLimiter:
        """Quotas given per minute, enforced over ``window`` seconds (scaled, at least 1)."""
        return cls(client, prefix, name, window=window,
                   requests=max(1, requests_per_minute * window // 60),
                   tokens=max(1, tokens_per_minute * window // 60))

    def _cost(self, tokens: int) -> int:
        return min(self.tokens.amount, max(1, math.ceil(tokens / self.token_unit)))

    def _wait(self, item: RateLimitItemPerSecond, kind: str) -> float:
        reset = self.limiter.get_window_stats(item, self.name, kind).reset_time
        return min(float(item.get_expiry()), max(0.01, reset - time.time()))

    def acquire(self, tokens: int, max_wait: float) -> float:
        """Take one request and ``tokens`` from the windows; returns the seconds it waited.

        Raises TransientEngineError (retry_after: when the window should have room) when
        that would take more than ``max_wait`` seconds. A request slot taken while the token
        window is full is not given back (the limiter errs on the safe side).
        """
        cost = self._cost(tokens)
        started = time.monotonic()
        have_request = False
        with redis_conn.unavailable("the rate limiter cannot reach Redis"):
            while True:
                if not self.limiter.test(self.tokens, self.name, "tokens", cost=cost):
                    wait = self._wait(self.tokens, "tokens")
                elif not have_request and not self.limiter.hit(self.requests, self.name,
                                                               "requests"):
                    wait = self._wait(self.requests, "requests")
                else:
                    have_request = True
                    if self.limiter.hit(self.tokens, self.name, "tokens", cost=cost):
                        return time.monotonic() - started
                    wait = self._wait(self.tokens, "tokens")
                waited = time.monotonic() - started
                if waited + wait > max_wait:
                    raise TransientEngineError(
                        f"rate limit of {self.name} reached (shared by all workers): room in "
                        f"{wait:.1f}s, more than this request may wait", retry_after=wait)
                # A little jitter, so workers woken together do not all race for one slot.
                self.sleep(wait + random.uniform(0, min(0.05, wait)))
