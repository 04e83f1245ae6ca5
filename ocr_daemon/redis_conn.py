"""Redis URLs and clients: the configured URL, the embedded server's URL, Celery's spelling;
and the one place a Redis error becomes ServiceUnavailable."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import redis

from ocr_daemon.config import Config
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


def client(url: str) -> redis.Redis:
    if url.startswith("redis+socket://"):
        url = "unix://" + url[len("redis+socket://"):]
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
    )


@contextlib.contextmanager
def unavailable(what: str = "Redis") -> Iterator[None]:
    """Redis errors in the block (or the decorated function) become ServiceUnavailable
    (retryable), with ``what`` saying what could not be reached."""
    try:
        yield
    except redis.RedisError as exc:
        raise ServiceUnavailable(f"{what}: {exc}") from exc
