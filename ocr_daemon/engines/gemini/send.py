"""One Gemini request under the fleet's rules: engine flags, key probe, rate limit, retries.

Retry policy of a request (``max_attempts`` tries in the worker, then the Celery task is
retried later with ``retry_after``):

- 429 for a per-minute quota: wait the server's RetryInfo.retryDelay when it gives one, else
  exponential backoff with full jitter (``retry_backoff`` doubling);
- 500, 502, 503, 504, 408, timeouts, connection errors: backoff with jitter;
- 429 for a per-day quota: no retry; every worker pauses (gemini_guard) until it resets;
- a refused key (400 API_KEY_INVALID, 401, 403): no retry; every worker stops sending.

All waits of one chunk (rate limiter, key probe, retry delays) share ``max_wait``: a wait
that would pass it raises TransientEngineError(retry_after) at once, so a worker is never
held longer than that by someone else's quota.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import redis

from ocr_daemon import log
from ocr_daemon.backoff import backoff
from ocr_daemon.config import GeminiConfig
from ocr_daemon.engines.gemini import usage as gemini_usage
from ocr_daemon.engines.gemini.exchange import Answer, Tokens, Variant
from ocr_daemon.engines.gemini.guard import Guard, seconds_to_daily_reset
from ocr_daemon.engines.gemini.media import Media
from ocr_daemon.engines.gemini.usage import Usage
from ocr_daemon.engines.ratelimit import RateLimiter
from ocr_daemon.errors import (
    EnginePaused,
    KeyRejected,
    QuotaExhausted,
    RateLimited,
    ServerError,
    SettingRefused,
    TransientEngineError,
)
from ocr_daemon.service import metrics

if TYPE_CHECKING:
    from ocr_daemon.engines.gemini.api import GeminiApi


class Budget:
    """The seconds one chunk may still spend waiting in this worker."""

    def __init__(self, seconds: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.left = seconds
        self._sleep = sleep

    def spend(self, seconds: float) -> None:
        self.left -= seconds

    def sleep(self, seconds: float) -> None:
        self._sleep(seconds)
        self.spend(seconds)


class Sender:
    def __init__(self, api: GeminiApi, guard: Guard, limiter: RateLimiter,
                 settings: GeminiConfig, watch: str = "") -> None:
        self.api = api
        self.guard = guard
        self.limiter = limiter
        self.s = settings
        self.watch = watch
        self.log = log.get("ocr_daemon.engines.gemini.engine", model=settings.model)

    def send(self, media: Sequence[Media], prompt: str, variant: Variant, tokens: int,
             budget: Budget, max_output_tokens: int) -> Answer:
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = self._once(media, prompt, variant, tokens, budget, max_output_tokens)
            except QuotaExhausted as exc:
                raise self._pause(exc) from None
            except TransientEngineError as exc:
                delay = self._delay(exc, attempt, budget)
                if delay is None:
                    raise
                self.log.info("gemini_retry", attempt=attempt, delay=round(delay, 2),
                              error=exc.message)
                budget.sleep(delay)
                continue
            self.account(answer.tokens)
            return answer

    def account(self, tokens: Tokens, batch: bool = False) -> Usage:
        """A billed response: its tokens into the metrics and today's totals in Redis."""
        used = Usage(self.s.model, batch, 1, tokens.prompt, tokens.output, tokens.thinking,
                     tokens.total).priced(self.s)
        metrics.gemini_tokens(self.guard, self.s.model, self.watch, used)
        try:
            gemini_usage.record_day(self.guard.r, self.guard.prefix, used)
        except redis.RedisError as exc:  # an estimate lost; never the page
            self.log.warning("gemini_usage_not_recorded", error=str(exc))
        return used

    def _once(self, media: Sequence[Media], prompt: str, variant: Variant, tokens: int,
              budget: Budget, max_output_tokens: int) -> Answer:
        with self.guard.sending(max(0.0, budget.left)) as waited:
            budget.spend(waited)
            waited = self.limiter.acquire(tokens, max(0.0, budget.left))
            budget.spend(waited)
            metrics.limiter_waited(self.guard, f"gemini/{self.s.model}", waited)
            try:
                answer = self.api.generate(media, prompt, variant, max_output_tokens)
            except KeyRejected as exc:
                self.guard.disable(exc.reason)
                self.log.error("gemini_key_rejected", reason=exc.reason, error=exc.message,
                               hint=exc.hint)
                raise
            except SettingRefused as exc:
                self.guard.refuse(exc)
                self.log.error("gemini_setting_refused", key=exc.key, reason=exc.reason,
                               error=exc.message, hint=exc.hint)
                raise
            except (RateLimited, QuotaExhausted) as exc:
                self.guard.verified()  # quotas are checked after the key: it is good
                metrics.rate_limited(self.guard, self.s.model, isinstance(exc, QuotaExhausted))
                raise
            self.guard.verified()
            return answer

    def _delay(self, exc: TransientEngineError, attempt: int, budget: Budget) -> float | None:
        """Seconds before the next try, or None when this one should go back to Celery."""
        # Only the server's answers are retried here; a full limiter or a paused engine has
        # already waited what it may (or must wait far longer): back to Celery.
        if not isinstance(exc, RateLimited | ServerError) or attempt >= self.s.max_attempts:
            return None
        server = exc.retry_after if isinstance(exc, RateLimited) else None
        if server is not None and server > budget.left:
            return None
        delay = backoff(attempt - 1, self.s.retry_backoff, self.s.max_wait, server)
        return delay if delay <= budget.left else None

    def _pause(self, exc: QuotaExhausted) -> EnginePaused:
        seconds = self.s.quota_pause or seconds_to_daily_reset(self.guard.clock.time())
        info = self.guard.pause(seconds, exc.quota_id)
        message = (f"Gemini daily quota of model {self.s.model} exhausted ({exc.quota_id}); "
                   f"the engine is paused for every worker until {info['until']}")
        self.log.error("gemini_daily_quota_exhausted", until=info["until"],
                       quota_id=exc.quota_id, error=exc.message)
        return EnginePaused(message, retry_after=seconds)
