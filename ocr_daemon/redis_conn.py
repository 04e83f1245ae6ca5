"""Redis URLs and clients: the configured URL, the embedded server's URL, Celery's spelling;
and the one place a Redis error becomes ServiceUnavailable.

With Sentinel (``sentinel://h1:26379;sentinel://h2:26379/0`` and ``redis.master_name``), a
client asks the Sentinels for the master on every new connection, so after a failover the
next command that fails reconnects to the new master: no process restarts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.sentinel import Sentinel

from ocr_daemon.config import Config, RedisConfig
from ocr_daemon.errors import ServiceUnavailable

EMBEDDED_URL_FILE = "redis.url"


def embedded_url_file(cfg: Config) -> Path:
    return cfg.state_dir / EMBEDDED_URL_FILE


def resolve_url(cfg: Config) -> str:
    """The URL to connect to: the configured one, or the one the embedded server published."""
    if cfg.redis.url != "embedded":
        return cfg.redis.url
    try:
        return embedded_url_file(cfg).read_text(encoding="utf-8").strip()
    except OSError:
        raise ServiceUnavailable(
            "the embedded Redis is not running (no "
            f"{embedded_url_file(cfg)}): start `ocr-daemon run` first",
        ) from None


def celery_url(url: str) -> str:
    """Celery/kombu spell unix sockets redis+socket:///path."""
    if url.startswith("unix://"):
        return "redis+socket://" + url[len("unix://"):]
    return url


CLIENT_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
    "health_check_interval": 30,
    "retry_on_timeout": True,
}


def sentinels(url: str) -> tuple[list[tuple[str, int]], int]:
    """The Sentinel addresses and the database of a ``sentinel://...;sentinel://.../db`` URL."""
    addresses, db = [], 0
    for part in url.split(";"):
        parts = urlsplit(part)
        addresses.append((parts.hostname or "127.0.0.1", parts.port or 26379))
        if parts.path.strip("/"):
            db = int(parts.path.strip("/"))
    return addresses, db


def client(url: str, settings: RedisConfig | None = None) -> redis.Redis:
    """A client of ``url``; for a sentinel:// URL, of the master ``settings`` name."""
    if url.startswith("sentinel://"):
        if settings is None or not settings.master_name:
            raise ServiceUnavailable("a sentinel:// URL needs redis.master_name")
        addresses, db = sentinels(url)
        watchers = Sentinel(  # type: ignore[no-untyped-call]
            addresses, socket_timeout=5, socket_connect_timeout=5,
            sentinel_kwargs={"password": settings.sentinel_password, "socket_timeout": 5})
        master: redis.Redis = watchers.master_for(  # type: ignore[no-untyped-call]
            settings.master_name, db=db, password=settings.password, **CLIENT_OPTIONS)
        return master
    if url.startswith("redis+socket://"):
        url = "unix://" + url[len("redis+socket://"):]
    return redis.Redis.from_url(url, **CLIENT_OPTIONS)


def celery_transport_options(settings: RedisConfig) -> dict[str, Any]:
    """What kombu needs besides the URL: for Sentinel, the master's name and passwords."""
    if not settings.master_name:
        return {}
    options: dict[str, Any] = {"master_name": settings.master_name}
    if settings.sentinel_password:
        options["sentinel_kwargs"] = {"password": settings.sentinel_password}
    if settings.password:
        options["password"] = settings.password
    return options


@contextlib.contextmanager
def unavailable(what: str = "Redis") -> Iterator[None]:
    """Redis errors in the block (or the decorated function) become ServiceUnavailable
    (retryable), with ``what`` saying what could not be reached."""
    try:
        yield
    except redis.RedisError as exc:
        raise ServiceUnavailable(f"{what}: {exc}") from exc
