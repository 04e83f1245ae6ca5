"""kombu's Redis transport with one fix: a worker survives its broker connection dropping.

When Redis goes away while a worker holds a delivered message, Celery closes the broken
connection and kombu's channel, on closing, restores the message through a new connection
pool, built from the connection's settings, which kombu has already cleared: an
AttributeError ('NoneType' object has no attribute 'hostname') that Celery treats as
unrecoverable, and the worker exits instead of reconnecting (same family as
celery/kombu#582 and #970; still in kombu 5.7.0). Here that case raises redis's
ConnectionError, which kombu ignores while closing; Celery then reconnects. The message stays
in Redis's unacknowledged set, and the reaper hands it back (or Redis lost it with the
restart, and the reaper queues the document again from disk).
"""

from __future__ import annotations

from typing import Any

import redis
from kombu import transport as kombu_transport
from kombu.transport import redis as kombu_redis


class _SurvivesClose:
    connection: Any

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:  # closed under us: see the module docstring
            raise redis.ConnectionError("the broker connection is already closed")
        params: dict[str, Any] = super()._connparams(asynchronous)  # type: ignore[misc]
        return params


class Channel(_SurvivesClose, kombu_redis.Channel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(_SurvivesClose, kombu_redis.SentinelChannel):
    pass


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def install() -> None:
    """Make `redis://`, `rediss://`, `redis+socket://` and `sentinel://` broker URLs use
    these transports. Called before any connection exists (kombu caches the class)."""
    for scheme in ("redis", "rediss"):
        kombu_transport.TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
    kombu_transport.TRANSPORT_ALIASES["sentinel"] = f"{__name__}:SentinelTransport"
