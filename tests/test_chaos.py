"""Chaos: 100 documents while workers are killed, Redis restarts and the whole daemon is
killed and restarted. Every document ends exactly once, as a fault-free run would end it,
each fault leaves its own evidence, and no chunk is extracted more often than the faults
explain (the test engine counts its calls)."""

from __future__ import annotations

import os
import random
import re
import signal
from collections.abc import Callable
from pathlib import Path

import redis as redis_lib

from ocr_daemon.formats import pdf
from tests.support.engines import use_sleeping
from tests.support.pdfs import make_text_pdf, page_text

from .conftest import Env, Proc, RedisServer, alive, children, read_json, wait_for

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


RECEIVED = re.compile(r"\[([0-9a-f-]{36})\] received")  # Celery: "Task name[id] received"
ENDED = re.compile(r"\[([0-9a-f-]{36})\] (?:succeeded|raised|retry)")  # ... "succeeded in"


def in_hand(*workers: Proc) -> set[str]:
    """Tasks these workers received and have not finished: running or reserved (their logs
    are line-buffered stderr: up to date)."""
    out = "".join(w.output() for w in workers)
    return set(RECEIVED.findall(out)) - set(ENDED.findall(out))


def log_marks(env: Env) -> dict[int, int]:
    """Where each process's log ends now."""
    return {i: len(proc.output()) for i, proc in enumerate(env.procs)}


def received_since(env: Env, marks: dict[int, int]) -> set[str]:
    """Ids of the tasks a worker received after ``marks`` (processes started since: all)."""
    return {task for i, proc in enumerate(env.procs)
            for task in RECEIVED.findall(proc.output()[marks.get(i, 0):])}


def redis_answers(server: RedisServer) -> bool:
    try:
        return bool(server.client().ping())
    except redis_lib.RedisError:
        return False


def test_chaos_nothing_lost_duplicated_or_stuck(make_env: Callable[..., Env],
                                                tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", persistent=True)
    env = make_env()
    env.redis_url = redis.url
    env.write_config(**SETTINGS)
    counters = env.tmp / "c"
    use_sleeping(env, per_page=0.02, latency=0.1, counter_dir=counters)
    inputs = make_inputs(tmp_path / "inputs")
    held: dict[str, set[str]] = {}  # fault -> tasks in the killed workers' hands
    marks: dict[str, dict[int, int]] = {}  # fault -> where the logs stood then
    try:
        listener = env.listener()
        env.start("watch", notify=listener)
        workers = start_workers(env)
        listener.wait("READY=1")
        for source in inputs:  # dropped in a burst, as a scanner batch would be
            env.drop(source)
        done = lambda: len(list(env.outbox.glob("doc*.json"))) - len(  # noqa: E731
            list(env.outbox.glob("doc*.progress.json")))

        def before(fault: str, *victims: Proc) -> None:  # wait until they hold work
            held[fault] = wait_for(lambda: in_hand(*victims), 60, what=f"work in {fault}")
            marks[fault] = log_marks(env)

        wait_for(lambda: done() >= 5, 60, what="some documents done")
        before("prefork worker", workers[0])
        workers[0].kill_group()  # a whole prefork worker, main process and pool
        workers[0] = start_workers(env)[0]
        pool = wait_for(lambda: children(workers[0].pid), 60, what="a pool process")
        wait_for(lambda: "received" in workers[0].output(), 60, what="the worker taking work")
        os.kill(pool[0], signal.SIGKILL)  # one pool process, likely mid-task
        # ... which its worker replaces (billiard logs the death only when the process held
        # a task, so the evidence is the new pool process, not a log line)
        wait_for(lambda: not alive(pool[0]) and set(children(workers[0].pid)) - set(pool), 60,
                 what="the killed pool process replaced")
        wait_for(lambda: done() >= 25, 120, what="a quarter done")
        before("threads worker", workers[1])
        redis.stop()  # SIGKILL: it comes back from its append-only file
        assert not redis_answers(redis)
        workers[1].kill_group()  # a threads worker, while Redis is really away
        redis.start()
        workers[1] = env.start("worker", "--pool", "threads", "--concurrency", "4")
        wait_for(lambda: done() >= 50, 120, what="half done")
        survivor_log = workers[0].output()  # the prefork worker started after the first kill
        before("whole daemon", *workers)
        for proc in list(env.procs):  # the whole daemon at once
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
        client = redis.client()
        keys = {k: client.ttl(k) for k in client.keys(f"{env.prefix}*")}
        redis.stop()

    results = sorted(p.name for p in env.outbox.glob("*.json")
                     if not p.name.endswith(".progress.json"))
    assert results == [f"{s.stem}.json" for s in inputs]  # each once, none with a suffix
    assert sorted(p.name for p in env.archive.iterdir()) == [s.name for s in inputs]
    assert not any(env.failed.iterdir())
    calls: dict[str, int] = {}
    for source in inputs:  # identical to what a fault-free run extracts
        pages = _pages(source)
        expected = pdf.page_texts(source, list(range(pages)))
        assert (env.outbox / f"{source.stem}.txt").read_text() == "\f".join(expected)
        final = read_json(env.outbox / f"{source.stem}.progress.json")
        assert final["state"] == "completed"
        firsts = list(range(1, pages + 1, 10)) if pages > 10 else [1]  # one call per chunk
        for first in firsts:
            counter = counters / f"{final['doc_id']}-{first}"
            assert counter.exists(), f"{source.name}: pages from {first} never extracted"
            calls[f"{source.name}:{first}"] = int(counter.read_text())

    # Each fault met work in progress, shown by its own evidence: tasks in the killed
    # workers' hands were received again afterwards (handed back by a reaper or by kombu) ...
    for fault in ("prefork worker", "threads worker", "whole daemon"):
        again = held[fault] & received_since(env, marks[fault])
        assert again, f"{fault}: none of its {len(held[fault])} held messages ran again"
    # (the pool process died under its worker, which replaced it: checked where it happened)
    # ... and the surviving worker lost its broker while Redis was away.
    assert "Connection to broker lost" in survivor_log[marks["threads worker"][
        env.procs.index(workers[0])]:]

    # Repeated engine calls: a chunk runs again only when a fault interrupted it (4 kills and
    # one Redis restart), and no more often in all than the calls in flight at those faults:
    # 2 (prefork worker) + 1 (pool process) + 2 + 4 (Redis away: both workers' calls) + 6.
    extra = {k: n - 1 for k, n in calls.items() if n > 1}
    print(f"chaos: {len(calls)} chunks, {sum(calls.values())} engine calls, repeats {extra}")
    assert max(calls.values()) <= 1 + 5, extra
    assert sum(extra.values()) <= 2 + 1 + 6 + 6, extra

    lasting = {k: ttl for k, ttl in keys.items()
               if ttl < 0 and not k[len(env.prefix):].startswith(PERMANENT)}
    assert lasting == {}, lasting


def _pages(path: Path) -> int:
    from pypdf import PdfReader

    return len(PdfReader(path).pages)
