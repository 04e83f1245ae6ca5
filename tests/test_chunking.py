"""Large documents: chunked fan-out, live progress, failure policies, retries, nothing hangs."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader, PdfWriter

from ocr_daemon.formats import pdf
from ocr_daemon.pipeline.plan import in_chunks, should_chunk
from ocr_daemon.pipeline.start import start_document
from ocr_daemon.record import doc as docrecord
from ocr_daemon.record.disk import Plan
from tests.support.engines import use_sleeping
from tests.support.inprocess import Machine, TextFirstEngine
from tests.support.pdfs import make_text_pdf, page_text

from .conftest import RESOURCES, Env, Proc, RedisServer, read_json, wait_for

CHUNKED = {"chunk_pages": 10, "chunk_threshold_pages": 10}


def pages_pdf(path: Path, count: int) -> Path:
    return make_text_pdf(path, [page_text(n) for n in range(1, count + 1)])


def slow_stack(env: Env, sleep: float = 0.0, concurrency: int = 2,
               **faults: Any) -> list[Proc]:
    """`ocr-daemon watch` plus a worker whose engine (the test plugin's `sleeping`, a remote API
    stand-in) sleeps per chunk and injects ``faults``; calls are counted in tmp/counters."""
    use_sleeping(env, latency=sleep, counter_dir=env.tmp / "counters", **faults)
    worker = env.start("worker", "--pool", "threads", "--concurrency", str(concurrency))
    return [env.start("watch"), worker]


def test_should_chunk_only_large_pdfs_into_two_or_more_chunks() -> None:
    from ocr_daemon.config import WatchConfig

    w = WatchConfig(name="w", root=Path("/tmp"), chunk_pages=10, chunk_threshold_pages=10,
                    chunk_threshold_bytes=1000)
    assert should_chunk(w, 11, 10, 10)
    assert not should_chunk(w, 10, 10, 10)
    assert should_chunk(w, 20, 5000, 10)  # big in bytes
    assert not should_chunk(w, 5, 5000, 10)  # big, but one chunk anyway
    assert not should_chunk(w, 900, 10, 1000)  # text pages: a thousand to a chunk


def test_pages_go_in_chunks_of_chunk_pages_the_last_one_shorter() -> None:
    assert [len(c) for c in in_chunks(list(range(1, 24)), 10)] == [10, 10, 3]
    assert in_chunks([5, 10, 15, 20, 25], 2) == [[5, 10], [15, 20], [25]]
    assert list(itertools.chain(*in_chunks(list(range(1, 2001)), 1000))) == list(range(1, 2001))
    assert [len(c) for c in in_chunks(list(range(1, 2001)), 1000)] == [1000, 1000]


def plan_of(m: Machine, doc_id: str) -> Plan:
    doc = m.doc(doc_id)
    assert doc is not None
    plan = start_document(m.rt, doc, "task")
    assert plan is not None
    return plan


def test_text_pages_are_read_in_one_pass_up_to_text_chunk_pages(
        make_env: Callable[..., Env]) -> None:
    one = Machine(make_env(watch={"text_chunk_pages": 1000}).cfg)  # engine pdftext
    plan = plan_of(one, one.submit("book.pdf", 25))
    assert not plan.chunked and [c.pages for c in plan.chunks] == [list(range(1, 26))]
    assert not (one.paths.processing / one.sent[0][1] / "chunks").exists()  # nothing split
    few = Machine(make_env(watch={"text_chunk_pages": 10}).cfg)
    plan = plan_of(few, few.submit("book.pdf", 25))
    assert plan.chunked and [(c.first_page, c.last_page) for c in plan.chunks] == [
        (1, 10), (11, 20), (21, 25)]


def test_auto_reads_the_text_layer_in_the_document_task_and_fans_out_only_the_scans(
        make_env: Callable[..., Env]) -> None:
    engine = TextFirstEngine(scanned={4, 8, 12, 16, 20, 24})
    m = Machine(make_env(watch={"engine": "auto", "chunk_pages": 2, "chunk_threshold_pages": 2,
                                "text_chunk_pages": 1000}).cfg, engine)
    doc_id = m.submit("mixed.pdf", 25)
    plan = plan_of(m, doc_id)
    assert engine.text_calls == {n: 1 for n in range(1, 26)}  # one pass, before any chunk
    assert [c.pages for c in plan.chunks] == [
        [n for n in range(1, 26) if n % 4], [4, 8], [12, 16], [20, 24]]
    assert plan.chunked
    doc = m.doc(doc_id)
    assert doc is not None
    assert docrecord.pending_chunks(doc, plan) == [1, 2, 3]  # the text chunk is done
    live = m.rt.store.get(doc_id)
    assert live is not None
    assert [c.pages for c in live.chunks] == [[1, 25], [4, 8], [12, 16], [20, 24]]
    assert [c.state for c in live.chunks] == ["completed", "queued", "queued", "queued"]
    assert m.deliver(doc_id) == "completed"
    result = json.loads((m.paths.outbox / "mixed.json").read_text())
    assert [p["number"] for p in result["pages"]] == list(range(1, 26))
    assert [p["engine"] for p in result["pages"]] == [
        "pdftext" if n % 4 else "ocr" for n in range(1, 26)]
    assert engine.calls == {n: 1 for n in (4, 8, 12, 16, 20, 24)}  # OCR: the scans only


def test_auto_with_a_few_scans_reads_them_in_the_document_task_too(
        make_env: Callable[..., Env]) -> None:
    engine = TextFirstEngine(scanned={2, 3})
    m = Machine(make_env(watch={"engine": "auto", "text_chunk_pages": 1000}).cfg, engine)
    doc_id = m.submit("letter.pdf", 30)
    plan = plan_of(m, doc_id)
    assert not plan.chunked and [c.pages for c in plan.chunks] == [
        [1, *range(4, 31)], [2, 3]]
    assert m.deliver(doc_id) == "completed"


def test_large_pdf_fans_out_and_comes_out_complete_and_in_order(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch=CHUNKED)
    env.run_daemon()
    env.drop(pages_pdf(tmp_path / "big.pdf", 35))
    result = env.wait_result("big", timeout=60)
    assert [p["number"] for p in result["pages"]] == list(range(1, 36))
    assert [p["text"] for p in result["pages"]] == [page_text(n) for n in range(1, 36)]
    assert [c["pages"] for c in result["chunks"]] == [[1, 10], [11, 20], [21, 30], [31, 35]]
    progress = read_json(env.outbox / "big.progress.json")
    assert progress["chunks"]["total"] == 4 and progress["chunks"]["completed"] == 4
    assert all(item["state"] == "completed" and item["attempts"] == 1
               for item in progress["chunks"]["items"])
    wait_for(lambda: not any(env.processing.iterdir()), 10, what="processing/ emptied")


def real_300_pages(path: Path) -> Path:
    """300 real pages: the 4-page pdfLaTeX sample, 75 times over."""
    writer = PdfWriter()
    reader = PdfReader(RESOURCES / "pdflatex-4-pages.pdf")
    for _ in range(75):
        for page in reader.pages:
            writer.add_page(page)
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


@pytest.mark.slow
def test_real_300_page_pdf_equals_direct_extraction_and_progress_advances(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch=CHUNKED)
    slow_stack(env, 0.15, concurrency=4)
    source = real_300_pages(tmp_path / "book.pdf")
    env.drop(source)
    seen: list[tuple[str, int, int]] = []
    progress = env.outbox / "book.progress.json"

    def finished() -> bool:
        if progress.exists():
            data = read_json(progress)
            seen.append((data["state"], data["progress_percentage"],
                         data["chunks"]["completed"]))
        return (env.outbox / "book.json").exists()

    wait_for(finished, 120, interval=0.1, what="book.json")
    result = read_json(env.outbox / "book.json")
    assert [p["text"] for p in result["pages"]] == pdf.page_texts(source, list(range(300)))
    percentages = [p for state, p, _ in seen if state == "processing"]
    assert len({p for p in percentages if 0 < p < 100}) >= 3, seen
    completed_counts = [c for _, _, c in seen]
    assert completed_counts == sorted(completed_counts)  # never goes backwards
    assert seen[-1][0] == "completed" or read_json(progress)["state"] == "completed"


def test_failed_chunk_fails_the_document_and_keeps_partial_text(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch=CHUNKED)
    slow_stack(env, 0.0, failing_pages=[15])
    env.drop(pages_pdf(tmp_path / "broken.pdf", 30))
    error = env.wait_error("broken", timeout=60)
    assert error["error"]["code"] == "page_failed"
    assert error["error"]["retryable"] is False  # the page fails the same way every time
    assert "1 of 3 chunks failed" in error["error"]["message"]
    assert [(e["index"], e["pages"]) for e in error["chunk_errors"]] == [(1, [11, 20])]
    assert "injected permanent failure on page 15" in error["chunk_errors"][0]["error"]["message"]
    partial = (env.failed / "broken.partial.txt").read_text(encoding="utf-8").split("\f")
    assert partial[:10] == [page_text(n) for n in range(1, 11)]
    assert partial[10:20] == [""] * 10
    assert partial[20:] == [page_text(n) for n in range(21, 31)]
    assert (env.failed / "broken.pdf").exists()
    assert read_json(env.failed / "broken.progress.json")["chunks"]["failed"] == 1


def test_partial_policy_completes_with_missing_pages_in_warnings(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch={**CHUNKED, "on_chunk_failure": "partial"})
    slow_stack(env, 0.0, failing_pages=[15])
    env.drop(pages_pdf(tmp_path / "gappy.pdf", 30))
    result = env.wait_result("gappy", timeout=60)
    missing = [p["number"] for p in result["pages"] if p.get("missing")]
    assert missing == list(range(11, 21))
    assert any(w.startswith("pages 11-20 missing") for w in result["warnings"])
    assert read_json(env.outbox / "gappy.progress.json")["state"] == "completed"


def test_chunks_out_of_retries_fail_the_document_as_retryable_under_their_code(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch=CHUNKED, workers={"max_retries": 1})
    slow_stack(env, 0.0, transient_failures=5)
    env.drop(pages_pdf(tmp_path / "outage.pdf", 20))
    error = env.wait_error("outage", timeout=60)
    assert len(error["chunk_errors"]) == 2
    assert [e["error"]["code"] for e in error["chunk_errors"]] == ["engine_transient"] * 2
    assert error["error"]["code"] == "engine_transient"
    assert error["error"]["retryable"] is True  # `ocr-daemon retry` may well succeed later
    assert "2 of 2 chunks failed" in error["error"]["message"]
    for first in (1, 11):  # tried once and retried max_retries (1) times, then no more
        assert (env.tmp / "counters" / f"{error['doc_id']}-{first}").read_text() == "2"


def test_transient_failures_are_retried_with_backoff(make_env: Callable[..., Env],
                                                     tmp_path: Path) -> None:
    env = make_env(watch=CHUNKED)
    slow_stack(env, 0.0, transient_failures=2, retry_after=1.0)  # "try again in 1 s"
    env.drop(pages_pdf(tmp_path / "flaky.pdf", 20))
    result = env.wait_result("flaky", timeout=60)
    assert [p["text"] for p in result["pages"]] == [page_text(n) for n in range(1, 21)]
    items = read_json(env.outbox / "flaky.progress.json")["chunks"]["items"]
    assert [i["attempts"] for i in items] == [3, 3]
    for first in (1, 11):  # each retry waited the engine's delay (a lower bound: CI is slow)
        times = [float(t) for t in (env.tmp / "counters" / f"times-{result['doc_id']}-{first}"
                                    ).read_text().split()]
        assert len(times) == 3
        assert all(b - a >= 1.0 for a, b in itertools.pairwise(times)), times


def test_worker_process_killed_mid_chunk_the_document_still_completes(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch=CHUNKED)
    use_sleeping(env, latency=0.2, crash_pages=[15], counter_dir=env.tmp / "counters")
    worker = env.start("worker", "--pool", "prefork", "--concurrency", "2")
    env.start("watch")
    env.drop(pages_pdf(tmp_path / "crashy.pdf", 30))
    result = env.wait_result("crashy", timeout=90)
    assert [p["text"] for p in result["pages"]] == [page_text(n) for n in range(1, 31)]
    assert (env.tmp / "counters").joinpath(
        f"crash-{result['doc_id']}-11").read_text() == "2"  # crashed once, ran again
    assert "WorkerLostError" in worker.output() or "exited with" in worker.output()


def test_document_keys_deleted_mid_run_are_rebuilt_and_it_completes(
        make_env: Callable[..., Env], redis_server: RedisServer, tmp_path: Path) -> None:
    env = make_env(watch=CHUNKED)
    slow_stack(env, 0.3)
    env.drop(pages_pdf(tmp_path / "amnesia.pdf", 60))
    progress = env.outbox / "amnesia.progress.json"
    wait_for(lambda: progress.exists() and read_json(progress)["chunks"]["completed"] >= 1, 60,
             what="first chunk")
    doc_id = read_json(progress)["doc_id"]
    client = redis_server.client()
    keys = client.keys(f"{env.prefix}doc:{doc_id}*")  # the hash, chunk entries, done flags
    assert f"{env.prefix}doc:{doc_id}" in keys
    assert client.delete(*keys) == len(keys)
    result = env.wait_result("amnesia", timeout=60)
    assert [p["text"] for p in result["pages"]] == [page_text(n) for n in range(1, 61)]
    assert read_json(progress)["state"] == "completed"
    assert 0 < client.ttl(f"{env.prefix}doc:{doc_id}") <= env.cfg.state_ttl


@pytest.fixture
def own_redis(tmp_path: Path) -> RedisServer:
    server = RedisServer(tmp_path / "own-redis")
    yield server  # type: ignore[misc]
    server.stop()


def test_redis_restarted_empty_mid_run_the_reaper_finishes_the_document(
        make_env: Callable[..., Env], own_redis: RedisServer, tmp_path: Path) -> None:
    env = make_env(watch=CHUNKED)
    env.redis_url = own_redis.url
    env.write_config(watch=CHUNKED, stall_timeout=3)
    slow_stack(env, 0.4)
    env.drop(pages_pdf(tmp_path / "flushed.pdf", 100))
    progress = env.outbox / "flushed.progress.json"
    wait_for(lambda: progress.exists() and read_json(progress)["chunks"]["completed"] >= 2, 60,
             what="two chunks")
    own_redis.restart()  # queues, chord state and document state are all gone
    result = env.wait_result("flushed", timeout=120)
    assert [p["text"] for p in result["pages"]] == [page_text(n) for n in range(1, 101)]
    log = "".join(p.output() for p in env.procs)
    assert "document_requeued" in log


def test_document_whose_work_keeps_getting_lost_fails_after_max_attempts(
        make_env: Callable[..., Env], redis_server: RedisServer, tmp_path: Path) -> None:
    env = make_env(watch=CHUNKED)
    env.write_config(watch=CHUNKED, stall_timeout=2, max_document_attempts=2)
    env.start("worker", "--queues", "documents", "--concurrency", "1", "--pool", "threads")
    env.start("watch")
    stop = threading.Event()
    client = redis_server.client()

    def lose_chunk_messages() -> None:  # every chunk message vanishes, as in a flushed queue
        while not stop.is_set():
            client.delete(f"{env.prefix}chunks")
            time.sleep(0.05)

    thief = threading.Thread(target=lose_chunk_messages, daemon=True)
    thief.start()
    try:
        env.drop(pages_pdf(tmp_path / "doomed.pdf", 20))
        error = env.wait_error("doomed", timeout=60)
    finally:
        stop.set()
    assert error["error"]["code"] == "stalled"
    assert "2 times" in error["error"]["message"]
    assert (env.failed / "doomed.pdf").exists()
    wait_for(lambda: not any(env.processing.iterdir()), 10, what="processing/ emptied")


def test_auto_planned_again_after_a_crash_reads_the_same_text_chunks_and_completes_once(
        make_env: Callable[..., Env]) -> None:
    engine = TextFirstEngine(scanned={3, 6})
    m = Machine(make_env(watch={"engine": "auto", "chunk_pages": 1, "chunk_threshold_pages": 1,
                                "text_chunk_pages": 1000}).cfg, engine)
    doc_id = m.submit("mixed.pdf", 8)
    first = plan_of(m, doc_id)
    doc = m.doc(doc_id)
    assert doc is not None
    text_result = doc.dp.chunk_result(0).read_bytes()
    doc.dp.plan.unlink()  # killed after the text pass, before its plan was on disk
    again = plan_of(m, doc_id)
    assert again.chunks == first.chunks and again.chunked
    assert doc.dp.chunk_result(0).read_bytes() == text_result  # the same text chunk
    assert plan_of(m, doc_id) == again  # a redelivery after the plan: no text pass
    assert engine.text_calls == {n: 2 for n in range(1, 9)}
    assert m.deliver(doc_id) == "completed"
    assert engine.calls == {3: 1, 6: 1}
    result = json.loads((m.paths.outbox / "mixed.json").read_text())
    assert [p["number"] for p in result["pages"]] == list(range(1, 9))
