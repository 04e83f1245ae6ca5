"""Batch mode: chunks through the (fake) Gemini Batch API with the real google-genai client."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ocr_daemon.clock import SystemClock
from ocr_daemon.engines.base import Engine, Extraction, PageRequest
from ocr_daemon.errors import BatchJobFailed, EngineUnavailable, WaitingForBatch
from ocr_daemon.record.state import StateStore
from tests.support.pdfs import make_text_pdf, page_text

from . import test_gemini
from .conftest import Env, RedisServer, read_json, wait_for
from .fake_gemini import FakeGemini
from .test_gemini import KEY, Make, pdf_request

fake = test_gemini.fake  # the fixtures of the gemini engine's tests, shared
make_engine = test_gemini.make_engine
BATCH = {"mode": "batch", "batch_collect_seconds": 0, "batch_poll_interval": 0.05,
         "batch_poll_max": 0.05}


def until_done(engine: Engine, request: PageRequest, tries: int = 40) -> tuple[Extraction,
                                                                                list[str]]:
    """Extract as the chunk task's retries do, until the batch answers; the wait states."""
    states: list[str] = []
    for _ in range(tries):
        try:
            return engine.extract(request), states
        except WaitingForBatch as exc:
            assert exc.code == "waiting_for_batch" and exc.waits and exc.retry_after
            states.append(str(exc.state))
            time.sleep(0.06)
    raise AssertionError(f"still waiting after {tries} tries: {states}")


def kinds(fake: FakeGemini) -> list[str]:
    return [c.kind for c in fake.calls]


def test_a_chunk_goes_through_a_batch_job_and_splits_back_into_pages(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    request = pdf_request(tmp_path, [page_text(1), "", page_text(3)])
    extraction, states = until_done(make_engine(**BATCH), request)
    assert [p.text for p in extraction.pages] == [page_text(1), "", page_text(3)]
    assert "JOB_STATE_RUNNING" in states
    assert fake.generate_calls() == []  # nothing interactive
    assert kinds(fake).count("batch_create") == 1
    [job] = fake.batch.jobs.values()
    assert job.model == "gemini-3.1-flash-lite" and not job.from_file
    usage = extraction.usage
    assert usage is not None and usage["mode"] == "batch" and usage["requests"] == 1


def test_many_chunks_share_one_job_sent_when_enough_are_staged(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    engine = make_engine(**{**BATCH, "batch_collect_seconds": 3600, "batch_max_requests": 3})
    requests = [pdf_request(tmp_path, [page_text(3 * n + 1), page_text(3 * n + 2)])
                for n in range(3)]
    for request in requests[:2]:
        with pytest.raises(WaitingForBatch) as staged:
            engine.extract(request)
        assert staged.value.state == "STAGED" and staged.value.job is None
    assert kinds(fake) == []  # two staged: not due yet
    with pytest.raises(WaitingForBatch) as sent:
        engine.extract(requests[2])  # the third: due, sent
    assert sent.value.job is not None and kinds(fake)[0] == "batch_create"
    results = [until_done(engine, r)[0] for r in requests]
    assert kinds(fake).count("batch_create") == 1
    [job] = fake.batch.jobs.values()
    assert len(job.requests) == 3
    assert [[p.text for p in e.pages] for e in results] == [
        [page_text(3 * n + 1), page_text(3 * n + 2)] for n in range(3)]


def test_a_large_job_goes_as_a_jsonl_file_through_the_file_api(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    request = pdf_request(tmp_path, [page_text(1), page_text(2)])
    extraction, _ = until_done(make_engine(**BATCH, batch_inline_max_bytes=100), request)
    assert [p.text for p in extraction.pages] == [page_text(1), page_text(2)]
    [job] = fake.batch.jobs.values()
    assert job.from_file
    assert kinds(fake)[:3] == ["upload_start", "upload", "batch_create"]
    assert "file_download" in kinds(fake)


@pytest.mark.parametrize("outcome", ["BATCH_STATE_EXPIRED", "BATCH_STATE_FAILED"])
def test_an_expired_or_failed_job_sends_its_chunks_back_to_interactive(
        make_engine: Make, fake: FakeGemini, tmp_path: Path, outcome: str) -> None:
    fake.batch.outcome = outcome
    request = pdf_request(tmp_path, [page_text(1), page_text(2)])
    extraction, _ = until_done(make_engine(**BATCH), request)
    assert [p.text for p in extraction.pages] == [page_text(1), page_text(2)]
    assert len(fake.generate_calls()) == 1  # the chunk, interactively
    usage = extraction.usage
    assert usage is not None and usage["mode"] == "interactive"


def test_an_expired_job_fails_its_chunks_when_the_fallback_is_fail(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    fake.batch.outcome = "BATCH_STATE_EXPIRED"
    engine = make_engine(**BATCH, batch_fallback="fail")
    request = pdf_request(tmp_path, [page_text(1)])
    with pytest.raises(BatchJobFailed) as info:
        until_done(engine, request)
    assert "JOB_STATE_EXPIRED" in info.value.message and info.value.code == "batch_failed"
    assert fake.generate_calls() == []


def test_per_request_errors_are_handled_like_interactive_ones(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    engine = make_engine(**BATCH)
    fake.inject("max_tokens", when=page_text(5))  # the batched answer is cut: page by page
    cut = pdf_request(tmp_path, [page_text(5), page_text(6)])
    extraction, _ = until_done(engine, cut)
    assert [p.text for p in extraction.pages] == [page_text(5), page_text(6)]
    assert [len(c.texts) for c in fake.generate_calls()] == [1, 1]
    fake.inject("internal", when=page_text(7))  # a request's error: interactive
    failed = pdf_request(tmp_path, [page_text(7)])
    extraction, _ = until_done(engine, failed)
    assert [p.text for p in extraction.pages] == [page_text(7)]
    assert fake.generate_calls()[-1].texts == [page_text(7)]


def test_a_refusal_in_a_batched_answer_is_retried_interactively_page_by_page(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    fake.inject("recitation", when=page_text(9))
    request = pdf_request(tmp_path, [page_text(8), page_text(9)])
    extraction, _ = until_done(make_engine(**BATCH), request)
    assert [p.text for p in extraction.pages] == [page_text(8), page_text(9)]
    assert [c.texts for c in fake.generate_calls()] == [[page_text(8)], [page_text(9)]]


def test_a_rejected_key_stops_batch_mode_for_every_worker_after_one_request(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    fake.valid_keys = {"the-good-key"}
    for n in range(3):
        with pytest.raises(EngineUnavailable) as info:
            make_engine(**BATCH).extract(pdf_request(tmp_path, [page_text(n + 1)]))
        assert "check the API key" in info.value.message
    assert kinds(fake) == ["batch_create"]


def test_cancelled_documents_cancel_their_job(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    fake.batch.hold = True
    folder = tmp_path / "processing-doc"
    folder.mkdir()
    request = pdf_request(folder, [page_text(1)])
    engine = make_engine(**BATCH)
    with pytest.raises(WaitingForBatch):
        engine.extract(request)
    for item in folder.iterdir():  # the document is cancelled: its record removed
        item.unlink()
    folder.rmdir()
    time.sleep(0.06)
    other = pdf_request(tmp_path, [page_text(2)])  # another chunk's poll notices
    with pytest.raises(WaitingForBatch):
        engine.extract(other)
    time.sleep(0.06)
    with pytest.raises(WaitingForBatch):
        engine.extract(other)
    states = {j.id: j.state for j in fake.batch.jobs.values()}
    assert "BATCH_STATE_CANCELLED" in states.values()


def test_auto_mode_uses_batch_only_while_a_backlog_waits(
        make_engine: Make, fake: FakeGemini, tmp_path: Path, redis_server: RedisServer,
        key_prefix: str) -> None:
    engine = make_engine(**{**BATCH, "mode": "auto", "batch_threshold_pages": 100})
    small = pdf_request(tmp_path, [page_text(1)])
    engine.extract(small)  # nothing waits: interactive
    assert kinds(fake) == ["generate"]
    store = StateStore(redis_server.client(), key_prefix, 3600, SystemClock())
    store.set_doc("backlog-doc", state="processing", watch="w", pages=300, chunk_pages=10)
    redis_server.client().delete(f"{key_prefix}gemini:backlog:w")  # the 5 s cache
    busy = pdf_request(tmp_path, [page_text(2), page_text(3)])
    extraction, states = until_done(engine, busy)
    assert [p.text for p in extraction.pages] == [page_text(2), page_text(3)]
    assert states and kinds(fake).count("batch_create") == 1
    store.set_doc("backlog-doc", state="completed")
    redis_server.client().delete(f"{key_prefix}gemini:backlog:w")
    engine.extract(pdf_request(tmp_path, [page_text(4)]))  # the backlog is gone
    assert kinds(fake)[-1] == "generate" and kinds(fake).count("batch_create") == 1


def test_interactive_mode_never_uses_the_batch_api(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    make_engine().extract(pdf_request(tmp_path, [page_text(1)]))
    assert kinds(fake) == ["generate"]



def test_a_300_page_backlog_completes_in_batch_mode_through_a_restart_of_every_process(
        make_env: Callable[..., Env], fake: FakeGemini, tmp_path: Path) -> None:
    fake.batch.hold = True  # the jobs run until the daemon has been restarted
    env = make_env(watch={"engine": "gemini", "chunk_pages": 10, "chunk_threshold_pages": 10,
                          "chunks_in_flight": 40},
                   engines={"gemini": {"base_url": fake.url, "timeout": 5, "mode": "batch",
                                       "batch_collect_seconds": 2, "batch_poll_interval": 0.5,
                                       "batch_poll_max": 1}},
                   workers={"concurrency": 2, "retry_backoff_max": 2})
    proc = env.run_daemon(extra_env={"GEMINI_API_KEY": KEY})
    for n in range(3):
        env.drop(make_text_pdf(tmp_path / f"box{n}.pdf",
                               [page_text(100 * n + p) for p in range(1, 101)]))

    def submitted() -> int:
        return sum(len(j.requests) for j in fake.batch.jobs.values())

    wait_for(lambda: submitted() == 30, timeout=180, interval=0.5, what="30 chunks in jobs")
    progress = wait_for(lambda: (p := read_json(env.outbox / "box0.progress.json"))
                        .get("waiting") and p["waiting"].get("job_state") != "STAGED" and p,
                        timeout=60, what="a progress file waiting for a sent job")
    assert progress["state"] == "processing"
    assert progress["waiting"]["code"] == "waiting_for_batch"
    # Waiting more than Celery's default 3 retries is still waiting, not a failed chunk.
    wait_for(lambda: max(c["attempts"] or 0 for c in read_json(
        env.outbox / "box0.progress.json")["chunks"]["items"]) >= 6, timeout=60,
        what="a chunk that waited 5 times")
    assert progress["waiting"]["job_state"] in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING")
    shown = subprocess.run([sys.executable, "-m", "ocr_daemon", "status", "--json",
                            "--worker-timeout", "0.3", "--config", str(env.config_path)],
                           capture_output=True, text=True, env=env.env(), check=False,
                           timeout=60)
    assert json.loads(shown.stdout)["engines"]["gemini"]["batch"]["jobs"] >= 1, shown.stderr
    jobs = set(fake.batch.jobs)
    proc.stop()  # every process of the daemon, while the jobs run
    proc = env.run_daemon(extra_env={"GEMINI_API_KEY": KEY})
    fake.batch.hold = False
    for n in range(3):
        result = env.wait_result(f"box{n}", timeout=240)
        assert [p["text"] for p in result["pages"]] == [
            page_text(100 * n + p) for p in range(1, 101)]
        assert result["usage"]["requests"] == 10
        assert {c["usage"]["mode"] for c in result["chunks"]} == {"batch"}
    assert set(fake.batch.jobs) == jobs  # the same jobs, polled again: none sent twice
    assert fake.generate_calls() == []  # nothing went interactive
    assert KEY not in proc.output()


def test_a_batch_job_is_found_again_from_disk_when_redis_restarts_empty(
        make_env: Callable[..., Env], fake: FakeGemini, tmp_path: Path) -> None:
    own_redis = RedisServer(tmp_path / "own-redis")  # restarted empty: every key is lost
    try:
        fake.batch.hold = True
        watch = {"engine": "gemini", "chunk_pages": 10, "chunk_threshold_pages": 10}
        env = make_env(watch=watch)
        env.redis_url = own_redis.url
        env.write_config(watch=watch, stall_timeout=3, engines={"gemini": {
            "base_url": fake.url, "timeout": 5, "mode": "batch", "batch_collect_seconds": 1,
            "batch_poll_interval": 0.5, "batch_poll_max": 1}},
            workers={"concurrency": 2, "retry_backoff_max": 2})
        proc = env.run_daemon(extra_env={"GEMINI_API_KEY": KEY})
        env.drop(make_text_pdf(tmp_path / "crate.pdf", [page_text(p) for p in range(1, 41)]))
        wait_for(lambda: sum(len(j.requests) for j in fake.batch.jobs.values()) == 4,
                 timeout=120, interval=0.5, what="4 chunks in a job")
        jobs = set(fake.batch.jobs)
        proc.stop()
        own_redis.restart()  # queues, chord, document state, staged and job records: gone
        proc = env.run_daemon(extra_env={"GEMINI_API_KEY": KEY})
        fake.batch.hold = False
        result = env.wait_result("crate", timeout=180)
        assert [p["text"] for p in result["pages"]] == [page_text(p) for p in range(1, 41)]
        assert set(fake.batch.jobs) == jobs and fake.generate_calls() == []
        assert "document_requeued" in "".join(p.log_path.read_text() for p in env.procs)
    finally:
        own_redis.stop()
