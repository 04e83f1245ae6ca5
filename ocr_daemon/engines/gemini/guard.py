"""Engine-wide Gemini state in Redis that every worker sees: bad key, daily-quota pause, probe.

Keys (under the configured prefix; a key is named by a hash of the API key, never the key):

- ``gemini:disabled:<fingerprint>``: the API key was rejected (400 API_KEY_INVALID, 401,
  403). No worker sends with it any more; kept ``DISABLED_FOR`` seconds, then one request
  checks again. A new key has another fingerprint and is tried at once.
- ``gemini:verified:<fingerprint>``: a request with this key got past authentication.
- ``gemini:probe:<fingerprint>``: while a key is not verified, requests go one at a time
  under this lock, so a bad key costs one request, not one per worker.
- ``gemini:paused:<model>``: the model's daily quota is spent; no worker sends until it
  expires.
- ``gemini:refused:<settings>``: the API refused the configuration itself (model not found
  or retired, a thinking setting the model does not take): no worker sends with these
  settings (named by a hash of model and thinking settings, so a changed configuration is
  tried at once); kept ``DISABLED_FOR`` seconds, then one request checks again.

Verified and probe flags are per key *and* settings: a new model, like a new key, is tried by
one request while the others wait, so a refused configuration costs one request.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import redis

from ocr_daemon import redis_conn
from ocr_daemon.clock import Clock, SystemClock, iso
from ocr_daemon.config import GeminiConfig
from ocr_daemon.errors import (
    EnginePaused,
    EngineUnavailable,
    KeyRejected,
    ServiceUnavailable,
    SettingRefused,
    TransientEngineError,
)

DISABLED_FOR = 3600
VERIFIED_FOR = 3600
KEY_HINT = KeyRejected.hint

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def fingerprint(api_key: str) -> str:
    """A short, stable name for a key that does not reveal it."""
    return hashlib.sha256(b"ocr-daemon gemini key\0" + api_key.encode()).hexdigest()[:16]


def settings_fingerprint(settings: GeminiConfig) -> str:
    """A short name for what the API may refuse in a configuration: model and thinking."""
    budget, level = settings.thinking()
    raw = json.dumps([settings.model, budget, level])
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def seconds_to_daily_reset(now: float) -> float:
    """Seconds until midnight Pacific time, when Gemini's per-day quotas reset."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        tz: Any = ZoneInfo("America/Los_Angeles")
    except ZoneInfoNotFoundError:  # no time zone database: Pacific standard time is near enough
        tz = timezone(timedelta(hours=-8))
    local = datetime.fromtimestamp(now, tz)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(60.0, midnight.timestamp() - now)


class Guard:
    def __init__(self, client: redis.Redis, prefix: str, key_fingerprint: str, model: str, *,
                 probe_ttl: float, settings: str = "-",
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Clock | None = None) -> None:
        self.r = client
        # Wall-clock times shared through Redis (pauses, disabled keys) come from the clock;
        # the waits of `sending` stay on real time, since they pair with a real sleep.
        self.clock = clock or SystemClock()
        self.prefix = prefix
        self.fp = key_fingerprint
        self.model = model
        self.settings = settings
        self.disabled_key = f"{prefix}gemini:disabled:{key_fingerprint}"
        self.verified_key = f"{prefix}gemini:verified:{key_fingerprint}:{settings}"
        self.probe_key = f"{prefix}gemini:probe:{key_fingerprint}:{settings}"
        self.paused_key = f"{prefix}gemini:paused:{model}"
        self.refused_key = f"{prefix}gemini:refused:{settings}"
        self.probe_ttl_ms = int(probe_ttl * 1000)
        self.sleep = sleep
        self._release = client.register_script(_RELEASE)

    def _state(self) -> bool:
        """Raise when the key is disabled or the model paused; else whether it is verified."""
        disabled, refused, paused, verified = self.r.mget(
            self.disabled_key, self.refused_key, self.paused_key, self.verified_key)
        if disabled:
            reason = json.loads(disabled).get("reason", "rejected")
            raise EngineUnavailable(f"the Gemini engine is disabled: the API key was rejected "
                                    f"({reason}); check the API key", hint=KEY_HINT)
        if refused:
            info = json.loads(refused)
            raise SettingRefused(f"the Gemini engine is disabled for this configuration: "
                                 f"{info['message']}; fix {info['key']}",
                                 key=info["key"], reason=info["reason"])
        if paused:
            info = json.loads(paused)
            left = max(1.0, float(info["until_ts"]) - self.clock.time())
            raise EnginePaused(
                f"the Gemini daily quota of model {self.model} is exhausted "
                f"({info.get('quota_id')}); every worker is paused until {info['until']}",
                retry_after=left)
        return bool(verified)

    def check(self) -> None:
        """Raise when the key is disabled, the configuration refused or the model paused."""
        try:
            self._state()
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"cannot read the Gemini engine state in Redis: {exc}"
                                     ) from exc

    @contextlib.contextmanager
    def sending(self, max_wait: float) -> Iterator[float]:
        """Clear to send; yields the seconds it waited. One at a time while the key is new."""
        started = time.monotonic()
        with redis_conn.unavailable("cannot read the Gemini engine state in Redis"):
            while True:
                if self._state():
                    yield time.monotonic() - started
                    return
                token = uuid.uuid4().hex
                if self.r.set(self.probe_key, token, nx=True, px=self.probe_ttl_ms):
                    try:
                        self._state()  # the last prober may have just decided
                        yield time.monotonic() - started
                    finally:
                        self._release(keys=[self.probe_key], args=[token])
                    return
                waited = time.monotonic() - started
                if waited > max_wait:
                    raise TransientEngineError("another worker is still checking the Gemini "
                                               "API key", retry_after=5.0)
                self.sleep(0.05)

    def verified(self) -> None:
        self.r.set(self.verified_key, "1", ex=VERIFIED_FOR)

    def disable(self, reason: str) -> None:
        self.r.delete(self.verified_key)
        self.r.set(self.disabled_key, json.dumps({
            "reason": reason, "since": iso(self.clock.time()), "key": self.fp}),
            ex=DISABLED_FOR)

    def refuse(self, exc: SettingRefused) -> None:
        self.r.delete(self.verified_key)
        self.r.set(self.refused_key, json.dumps({
            "model": self.model, "key": exc.key, "reason": exc.reason, "message": exc.message,
            "since": iso(time.time()), "settings": self.settings}), ex=DISABLED_FOR)

    def pause(self, seconds: float, quota_id: str | None) -> dict[str, Any]:
        now = self.clock.time()
        info = {"model": self.model, "quota_id": quota_id, "since": iso(now),
                "until": iso(now + seconds), "until_ts": now + seconds}
        self.r.set(self.paused_key, json.dumps(info), ex=max(1, int(seconds)))
        return info


def status(client: redis.Redis, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """The engine-wide states for `ocr-daemon status`: disabled keys, refused settings,
    paused models."""
    out: dict[str, list[dict[str, Any]]] = {"disabled": [], "refused": [], "paused": []}
    for kind in out:
        for name in client.scan_iter(f"{prefix}gemini:{kind}:*", count=100):
            raw = client.get(name)
            if raw:
                out[kind].append({**json.loads(raw), "expires_in": client.ttl(name)})
    return out


def clear(client: redis.Redis, prefix: str) -> int:
    """Forget disabled keys, refused settings and pauses (after fixing the key or buying
    quota)."""
    names = [n for kind in ("disabled", "refused", "paused", "verified")
             for n in client.scan_iter(f"{prefix}gemini:{kind}:*", count=100)]
    return int(client.delete(*names)) if names else 0

