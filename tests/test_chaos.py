"""Chaos: 100 documents while workers are killed, Redis restarts and the whole daemon is
killed and restarted. Every document ends exactly once, as a fault-free run would end it."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

from ocr_daemon.formats import pdf
from tests.support.engines import use_sleeping
from tests.support.pdfs import make_text_pdf, page_text

from .conftest import Env, Proc, RedisServer, children, read_json, wait_for

DOCS = 100
SETTINGS = {
    "watch": {"chunk_pages": 10, "chunk_threshold_pages": 10, "settle_seconds": 0.2},
    "workers": {"concurrency": 2, "retry_backoff": 0.2, "retry_backoff_max": 2,
                "soft_time_limit": 15, "time_limit": 20, "shutdown_grace": 2},
    "stall_timeout": 5,
    "max_document_attempts": 10,
}
# Keys with no expiry that may remain, all of fixed size: kombu's routing tables and the
# fleet's metrics counters.
PERMANENT = ("_kombu.binding", "metrics")


def make_inputs(folder: Path) -> list[Path]:
    rng = random.Random(7)
    folder.mkdir()
    inputs = []
    for n in range(DOCS):
        pages = rng.randint(20, 45) if n % 5 == 0 else rng.randint(1, 3)
        first = n * 50
        inputs.append(make_text_pdf(folder / f"doc{n:03d}.pdf",
                                    [page_text(first + k) for k in range(pages)]))
    return inputs


def start_workers(env: Env) -> list[Proc]:
    return [env.start("worker", "--pool", "prefork", "--concurrency", "2"),
            env.start("worker", "--pool", "threads", "--concurrency", "4")]


def test_chaos_nothing_lost_duplicated_or_stuck(make_env: Callable[..., Env],
                                                tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", persistent=True)
    env = make_env()
    env.redis_url = redis.url
    env.write_config(**SETTINGS)
    use_sleeping(env, per_page=0.02, latency=0.1, counter_dir=env.tmp / "c")
    inputs = make_inputs(tmp_path / "inputs")
    try:
        listener = env.listener()
        watcher = env.start("watch", notify=listener)
        workers = start_workers(env)
        listener.wait("READY=1")
        for source in inputs:  # dropped in a burst, as a scanner batch would be
            env.drop(source)
        done = lambda: len(list(env.outbox.glob("doc*.json"))) - len(  # noqa: E731
            list(env.outbox.glob("doc*.progress.json")))

        wait_for(lambda: done() >= 5, 60, what="some documents done")
        workers[0].kill_group()  # a whole prefork worker, main process and pool
        workers[0] = start_workers(env)[0]
        time.sleep(2)
        pool = children(workers[0].pid)
        if pool:
            os.kill(pool[0], signal.SIGKILL)  # one pool process, mid-task
        wait_for(lambda: done() >= 25, 120, what="a quarter done")
        redis.restart()  # from its append-only file
        workers[1].kill_group()  # a threads worker, while Redis is away
        workers[1] = env.start("worker", "--pool", "threads", "--concurrency", "4")
        wait_for(lambda: done() >= 50, 120, what="half done")
        for proc in [watcher, *workers]:  # the whole daemon at once
            proc.kill_group()
        listener = env.listener()
        env.start("watch", notify=listener)
        start_workers(env)
        listener.wait("READY=1")

        wait_for(lambda: done() == DOCS, 240, interval=0.5, what=f"{DOCS} documents")
        wait_for(lambda: not any(env.processing.iterdir()), 30, what="processing/ empty")
        client = redis.client()  # messages a killed worker held are handed back and drained
        wait_for(lambda: not client.exists(f"{env.prefix}unacked"), 60, what="unacked drained")
    finally:
        logs = "".join(p.output() for p in env.procs)
        client = redis.client()
        keys = {k: client.ttl(k) for k in client.keys(f"{env.prefix}*")}
        redis.stop()

    results = sorted(p.name for p in env.outbox.glob("*.json")
                     if not p.name.endswith(".progress.json"))
    assert results == [f"{s.stem}.json" for s in inputs]  # each once, none with a suffix
    assert sorted(p.name for p in env.archive.iterdir()) == [s.name for s in inputs]
    assert not any(env.failed.iterdir())
    for source in inputs:  # identical to what a fault-free run extracts
        expected = pdf.page_texts(source, list(range(_pages(source))))
        assert (env.outbox / f"{source.stem}.txt").read_text() == "\f".join(expected)
        assert read_json(env.outbox / f"{source.stem}.progress.json")["state"] == "completed"
    lasting = {k: ttl for k, ttl in keys.items()
               if ttl < 0 and not k[len(env.prefix):].startswith(PERMANENT)}
    assert lasting == {}, lasting
    assert "document_requeued" in logs or "messages_restored" in logs  # faults were met


def _pages(path: Path) -> int:
    from pypdf import PdfReader

    return len(PdfReader(path).pages)
