"""Redis Sentinel: every process finds the master through the Sentinels, and a failover with
documents in flight (the master SIGKILLed mid-chunk) ends every document exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from ocr_daemon.service.procs import free_port
from tests.support.pdfs import make_text_pdf, page_text

from .conftest import Env, wait_for
from .test_chunking import slow_stack

MASTER = "ocrtest"


class SentinelCluster:
    """A master, a replica and three Sentinels on loopback ports, each its own process."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.master_port, self.replica_port = free_port(), free_port()
        self._server("master", self.master_port)
        self._server("replica", self.replica_port, "--replicaof", "127.0.0.1",
                     str(self.master_port))
        self.sentinel_ports = [free_port() for _ in range(3)]
        for n, port in enumerate(self.sentinel_ports):
            conf = tmp / f"sentinel{n}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp}\n"
                            f"sentinel monitor {MASTER} 127.0.0.1 {self.master_port} 2\n"
                            f"sentinel down-after-milliseconds {MASTER} 1000\n"
                            f"sentinel failover-timeout {MASTER} 10000\n"
                            f"sentinel parallel-syncs {MASTER} 1\n")
            self._start(f"sentinel{n}", ["redis-server", str(conf), "--sentinel",
                                         "--logfile", str(tmp / f"sentinel{n}.log")])
        for port in (self.master_port, self.replica_port, *self.sentinel_ports):
            wait_for(lambda p=port: self._ping(p), 20, what=f"redis on {port}")
        wait_for(self._replica_synced, 30, what="the replica to sync")
        wait_for(lambda: all(self._knows_replica(p) for p in self.sentinel_ports), 30,
                 what="every Sentinel to know the replica")

    def _server(self, name: str, port: int, *extra: str) -> None:
        self._start(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--dir", str(self.tmp),
                           "--dbfilename", f"{name}.rdb", "--logfile",
                           str(self.tmp / f"{name}.log"), *extra])

    def _start(self, name: str, argv: list[str]) -> None:
        self.procs[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                            start_new_session=True)

    @staticmethod
    def _ping(port: int) -> bool:
        try:
            return bool(redis.Redis(port=port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def _replica_synced(self) -> bool:
        info = redis.Redis(port=self.replica_port).info("replication")
        return bool(info.get("master_link_status") == "up")

    def _knows_replica(self, port: int) -> bool:
        try:
            replicas = redis.Redis(port=port).sentinel_slaves(MASTER)
        except redis.RedisError:
            return False
        return any(int(r.get("port", 0)) == self.replica_port for r in replicas)

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{p}" for p in self.sentinel_ports) + "/0"

    def master_address(self) -> tuple[str, int]:
        host, port = redis.Redis(port=self.sentinel_ports[0]).sentinel_get_master_addr_by_name(
            MASTER)
        return str(host), int(port)

    def kill_master(self) -> None:
        self.procs["master"].send_signal(signal.SIGKILL)
        self.procs["master"].wait(10)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    c = SentinelCluster(tmp_path / "sentinel")
    yield c
    c.close()


def _ended(env: Env, stem: str) -> str | None:
    if (env.outbox / f"{stem}.json").exists():
        return "completed"
    if (env.failed / f"{stem}.error.json").exists():
        return "failed"
    return None


@pytest.mark.slow
def test_failover_mid_run_ends_every_document_exactly_once(
        cluster: SentinelCluster, make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(redis={"url": cluster.url, "master_name": MASTER},
                   watch={"chunk_pages": 5, "chunk_threshold_pages": 5},
                   stall_timeout=20)
    slow_stack(env, 0.5, concurrency=4)
    stems = []
    for n in range(50):
        pages = 20 if n % 5 == 0 else 2  # every fifth document fans out in 4 chunks
        stems.append(f"doc{n:02d}")
        env.drop(make_text_pdf(tmp_path / f"doc{n:02d}.pdf",
                               [page_text(p) for p in range(1, pages + 1)]))
    wait_for(lambda: sum(1 for s in stems if _ended(env, s)) >= 5, 120,
             what="the first documents to end")
    old = cluster.master_address()
    cluster.kill_master()
    killed = time.monotonic()
    wait_for(lambda: cluster.master_address() != old, 60, what="the Sentinels to fail over")
    failover = time.monotonic() - killed
    wait_for(lambda: all(_ended(env, s) for s in stems), 400,
             what="every document to end after the failover")
    took = time.monotonic() - killed
    wait_for(lambda: not any(env.processing.iterdir()), 120, what="processing/ to empty")
    endings = {s: _ended(env, s) for s in stems}
    assert set(endings.values()) == {"completed"}, endings
    # exactly once: no document's results under a second, suffixed stem
    names = sorted(p.name for p in env.outbox.iterdir())
    assert names == sorted(f"{s}{ext}" for s in stems
                           for ext in (".json", ".progress.json", ".txt"))
    for s in stems:
        result = env.wait_result(s)
        pages = 20 if int(s[3:]) % 5 == 0 else 2
        assert [p["text"] for p in result["pages"]] == [page_text(p) for p in
                                                        range(1, pages + 1)]
    print(f"failover in {failover:.1f} s; every document ended {took:.1f} s after the kill")


def test_a_sentinel_url_without_master_name_is_a_config_error_naming_the_key(
        tmp_path: Path) -> None:
    from ocr_daemon import config
    from ocr_daemon.errors import ConfigError

    base = {"watches": [{"name": "w", "root": str(tmp_path / "w")}]}
    with pytest.raises(ConfigError) as bad:
        config.parse({**base, "redis": {"url": "sentinel://127.0.0.1:26379/0"}}, tmp_path)
    assert "redis: " in str(bad.value) and "master_name" in str(bad.value)
    with pytest.raises(ConfigError) as worse:
        config.parse({**base, "redis": {"url": "sentinel:/127.0.0.1"}}, tmp_path)
    assert "redis.url" in str(worse.value)
    cfg = config.parse({**base, "redis": {
        "url": "sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380/2", "master_name": "m",
        "sentinel_password": "s3cret"}}, tmp_path)
    assert "s3cret" not in str(config.redacted(cfg))
