"""Batch mode: chunks through the (fake) Gemini Batch API with the real google-genai client."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ocr_daemon.engines.base import Engine, Extraction, PageRequest
from ocr_daemon.errors import BatchJobFailed, WaitingForBatch
from ocr_daemon.testing import page_text

from . import test_gemini
from .fake_gemini import FakeGemini
from .test_gemini import Make, pdf_request

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


def test_interactive_mode_never_uses_the_batch_api(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    make_engine().extract(pdf_request(tmp_path, [page_text(1)]))
    assert kinds(fake) == ["generate"]

