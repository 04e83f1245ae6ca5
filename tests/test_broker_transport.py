"""The broker transport: a worker's connection closed after Redis went away stays quiet."""

from __future__ import annotations

from kombu import Connection

from ocr_daemon.delivery import transport
from ocr_daemon.delivery.transport import Transport
from tests.conftest import RedisServer

transport.install()  # as every process does before its first broker connection


def test_every_redis_broker_url_uses_our_transport() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6380/0",
                "redis+socket:///run/redis.sock"):
        assert Connection(url).get_transport_cls() is Transport


def test_closing_a_channel_whose_connection_kombu_already_cleared_keeps_the_message(
        redis_server: RedisServer) -> None:
    conn = Connection(f"redis://127.0.0.1:{redis_server.port}/0")
    client = redis_server.client()
    try:
        channel = conn.default_channel
        queue = conn.SimpleQueue("transport-test")
        queue.put({"doc_id": "d1"})
        message = queue.get(timeout=5)  # delivered to us, not acknowledged
        assert message.payload == {"doc_id": "d1"}
        # The state kombu leaves after Redis dropped the connection: its settings already
        # cleared while the channel still holds the delivered message. kombu's own channel
        # raised AttributeError here, which stopped the Celery worker for good.
        conn._do_close_transport()
        conn.maybe_close_channel(channel)  # no exception: Celery goes on to reconnect
        assert client.hlen("unacked") == 1  # still in Redis, for the reaper to hand back
    finally:
        client.delete("unacked", "unacked_index", "transport-test")
