"""Engine `gemini`: the real google-genai client against a fake Gemini server, a real Redis."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from PIL import Image

from ocr_daemon import config
from ocr_daemon.engines.base import Engine, EngineContext, Page, PageRequest
from ocr_daemon.engines.gemini import guard as gemini_guard
from ocr_daemon.engines.registry import build
from ocr_daemon.errors import EngineUnavailable, PageFailed, TransientEngineError
from tests.support.pdfs import make_text_pdf, page_text

from .conftest import RESOURCES, Env, RedisServer, read_json, wait_for
from .fake_gemini import FakeGemini, running

PDF = "application/pdf"
KEY = "AIzaTEST-0123456789-abcdefghijklmnopq"


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with running() as server:
        yield server


Make = Callable[..., Engine]


@pytest.fixture
def make_engine(tmp_path: Path, redis_server: RedisServer, key_prefix: str,
                fake: FakeGemini) -> Make:
    """An engine built through the registry, as a worker builds it (each call: a new worker)."""

    def make(key: str = KEY, **gemini: Any) -> Engine:
        key_file = tmp_path / f"key-{abs(hash(key))}"
        key_file.write_text(key + "\n", encoding="utf-8")
        settings = {"base_url": fake.url, "api_key_file": str(key_file), "timeout": 2,
                    "retry_backoff": 0.05, "max_wait": 10, "requests_per_minute": 10_000,
                    **gemini}
        cfg = config.parse({
            "state_dir": str(tmp_path / "state"),
            "watches": [{"name": "w", "root": str(tmp_path / "root"), "engine": "gemini"}],
            "engines": {"gemini": settings},
        }, tmp_path)
        return build(EngineContext(cfg, cfg.watches[0], redis_server.client(), key_prefix))

    return make


def pdf_request(tmp_path: Path, texts: list[str], first: int = 1) -> PageRequest:
    path = make_text_pdf(tmp_path / f"doc-{len(list(tmp_path.glob('doc-*')))}.pdf", texts)
    return PageRequest(path, PDF, tuple(Page(first + i, i) for i in range(len(texts))))


def texts_of(engine: Engine, request: PageRequest) -> list[str]:
    return [p.text for p in engine.extract(request).pages]


def arrived_by(times: list[float], started: float, seconds: float) -> int:
    """How many of ``times`` came before ``started`` + ``seconds``."""
    return sum(t < started + seconds for t in times)


# --- pages, media, answers -----------------------------------------------------------------


def test_chunk_goes_in_one_request_and_splits_back_into_pages(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    engine = make_engine(max_output_tokens=4096, thinking_budget=0, model="gemini-3.5-flash")
    request = pdf_request(tmp_path, [page_text(1), "", page_text(3), page_text(4)])
    assert texts_of(engine, request) == [page_text(1), "", page_text(3), page_text(4)]
    [call] = fake.generate_calls()
    assert call.model == "gemini-3.5-flash" and call.media == ["inline:application/pdf"]
    assert call.headers["x-goog-api-key"] == KEY
    gen = call.generation_config
    assert (gen["temperature"], gen["maxOutputTokens"]) == (0.0, 4096)
    prompt = call.body["contents"][0]["parts"][-1]["text"]
    assert "exactly 4 pages" in prompt and "no commentary" in prompt


def test_requests_carry_the_thinking_setting_of_the_model_family(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    request = pdf_request(tmp_path, [page_text(1)])
    make_engine().extract(request)  # the default: a Gemini 3 Flash-Lite
    make_engine(thinking_level="low").extract(request)
    make_engine(model="gemini-2.5-flash").extract(request)
    make_engine(model="gemini-2.5-flash", thinking_budget=512).extract(request)
    sent = [(c.model, c.thinking) for c in fake.generate_calls()]
    assert sent == [("gemini-3.1-flash-lite", {"thinkingLevel": "MINIMAL"}),
                    ("gemini-3.1-flash-lite", {"thinkingLevel": "LOW"}),
                    ("gemini-2.5-flash", {"thinkingBudget": 0}),
                    ("gemini-2.5-flash", {"thinkingBudget": 512})]


def test_page_count_mismatch_falls_back_to_one_request_per_page(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    fake.inject("merge_pages")
    request = pdf_request(tmp_path, [page_text(n) for n in (7, 8, 9)], first=7)
    assert texts_of(make_engine(), request) == [page_text(n) for n in (7, 8, 9)]
    calls = fake.generate_calls()
    assert [len(c.texts) for c in calls] == [3, 1, 1, 1]  # single-page PDFs made in memory
    assert [c.texts for c in calls[1:]] == [[page_text(n)] for n in (7, 8, 9)]


def test_blank_page_gives_empty_text_not_invented_text(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    extraction = make_engine().extract(pdf_request(tmp_path, [""]))
    assert [p.text for p in extraction.pages] == [""] and extraction.warnings == []
    assert len(fake.generate_calls()) == 1


def test_images_go_with_an_image_type_gemini_reads(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    png = tmp_path / "scan.png"
    Image.new("L", (300, 200), 255).save(png)
    engine = make_engine()
    fake.image_text = "text on the PNG"
    assert texts_of(engine, PageRequest(png, "image/png", (Page(1, 0),))) == ["text on the PNG"]
    fake.image_text = "text on the TIFF"
    tiff = PageRequest(RESOURCES / "phototest.tif", "image/tiff", (Page(1, 0),))
    assert texts_of(engine, tiff) == ["text on the TIFF"]
    assert [c.media for c in fake.generate_calls()] == [["inline:image/png"],
                                                        ["inline:image/png"]]


def test_large_chunk_is_uploaded_through_the_file_api(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    fake.processing_polls = 1
    request = pdf_request(tmp_path, [page_text(n) for n in (1, 2, 3)])
    assert request.path.stat().st_size > 1000
    assert texts_of(make_engine(inline_max_bytes=1000), request) == [
        page_text(n) for n in (1, 2, 3)]
    kinds = [c.kind for c in fake.calls]
    assert kinds[:2] == ["upload_start", "upload"] and "file_get" in kinds
    assert kinds[-2:] == ["generate", "file_delete"]
    assert fake.generate_calls()[0].media == ["file:application/pdf"]
    assert fake.files == {}  # deleted after use


# --- transient faults ------------------------------------------------------------------------


def test_rate_limit_waits_the_servers_retry_delay(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    fake.inject("rate_limit", retry_delay="1.2s")
    started = time.monotonic()
    assert texts_of(make_engine(), pdf_request(tmp_path, [page_text(1)])) == [page_text(1)]
    calls = fake.generate_calls()
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 1.2
    assert time.monotonic() - started < 5


def test_rate_limit_without_retry_delay_backs_off_and_retries(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    fake.inject("rate_limit", times=2)
    assert texts_of(make_engine(), pdf_request(tmp_path, [page_text(1)])) == [page_text(1)]
    assert [c.status for c in fake.generate_calls()] == [429, 429, 200]


def test_retry_delay_beyond_max_wait_goes_back_to_the_task_with_it(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    fake.inject("rate_limit", retry_delay="30s")
    started = time.monotonic()
    with pytest.raises(TransientEngineError) as info:
        make_engine(max_wait=5).extract(pdf_request(tmp_path, [page_text(1)]))
    assert info.value.retry_after == pytest.approx(30)
    assert len(fake.generate_calls()) == 1 and time.monotonic() - started < 3


@pytest.mark.parametrize("fault", ["internal", "unavailable", "bad_gateway", "gateway_timeout",
                                   "slow"])
def test_server_errors_and_timeouts_are_retried(
        make_engine: Make, fake: FakeGemini, tmp_path: Path, fault: str) -> None:
    fake.inject(fault, delay=1.6 if fault == "slow" else 0.0)
    engine = make_engine(timeout=1)
    assert texts_of(engine, pdf_request(tmp_path, [page_text(1), page_text(2)])) == [
        page_text(1), page_text(2)]
    assert [c.fault for c in fake.generate_calls()] == [fault, None]


def test_errors_that_persist_go_back_to_the_task_after_max_attempts(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    fake.inject("unavailable", times=5)
    with pytest.raises(TransientEngineError) as info:
        make_engine(max_attempts=3).extract(pdf_request(tmp_path, [page_text(1)]))
    assert "503 UNAVAILABLE" in info.value.message and info.value.retryable
    assert len(fake.generate_calls()) == 3


def test_daily_quota_pauses_every_worker_without_more_requests(
        make_engine: Make, fake: FakeGemini, tmp_path: Path, redis_server: RedisServer,
        key_prefix: str) -> None:
    fake.inject("daily_quota")
    request = pdf_request(tmp_path, [page_text(1)])
    with (structlog.testing.capture_logs() as logs,
          pytest.raises(TransientEngineError) as first):
        make_engine(quota_pause=120).extract(request)
    assert first.value.retry_after == pytest.approx(120)
    assert "daily quota" in first.value.message and "paused" in first.value.message
    [event] = [e for e in logs if e["event"] == "gemini_daily_quota_exhausted"]
    assert event["log_level"] == "error" and "PerDay" in event["quota_id"]
    with pytest.raises(TransientEngineError) as other_worker:
        make_engine(quota_pause=120).extract(request)
    assert 100 < (other_worker.value.retry_after or 0) <= 120
    assert len(fake.generate_calls()) == 1  # nobody asked again
    paused = gemini_guard.status(redis_server.client(), key_prefix)["paused"]
    assert [(p["model"], p["quota_id"]) for p in paused] == [
        ("gemini-3.1-flash-lite", "GenerateRequestsPerDayPerProjectPerModel-FreeTier")]


# --- keys ------------------------------------------------------------------------------------


def test_bad_key_disables_the_engine_for_every_worker_after_one_request(
        make_engine: Make, fake: FakeGemini, tmp_path: Path, redis_server: RedisServer,
        key_prefix: str) -> None:
    fake.valid_keys = {"the-good-key"}
    request = pdf_request(tmp_path, [page_text(1)])
    for _worker in range(3):
        with pytest.raises(EngineUnavailable) as info:
            make_engine().extract(request)
        assert "check the API key" in info.value.message
        assert "API key" in info.value.hint
    assert len(fake.generate_calls()) == 1
    [disabled] = gemini_guard.status(redis_server.client(), key_prefix)["disabled"]
    assert disabled["reason"] == "400 API_KEY_INVALID"
    assert texts_of(make_engine("the-good-key"), request) == [page_text(1)]  # a new key: tried
    client = redis_server.client()
    for name in client.scan_iter(f"{key_prefix}*"):
        assert KEY not in name
        if client.type(name) == "string":
            assert KEY not in (client.get(name) or "")


def test_new_key_is_tried_by_one_request_while_workers_wait(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    fake.valid_keys = {"the-good-key"}
    request = pdf_request(tmp_path, [page_text(1)])
    engines = [make_engine() for _ in range(6)]
    errors: list[BaseException] = []

    def work(engine: Engine) -> None:
        try:
            engine.extract(request)
        except EngineUnavailable as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(errors) == 6 and len(fake.generate_calls()) == 1


def test_forbidden_key_is_permanent_and_never_appears_in_logs_or_errors(
        make_engine: Make, fake: FakeGemini, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    fake.forbidden_keys = {KEY}
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(EngineUnavailable) as info:
            make_engine().extract(pdf_request(tmp_path, [page_text(1)]))
        fake.forbidden_keys = set()
        fake.inject("rate_limit")
        fake.inject("unavailable")
        make_engine("another-key").extract(pdf_request(tmp_path, [page_text(2)]))
    assert fake.generate_calls()[0].status == 403
    assert KEY in json.dumps(fake.calls[0].headers)  # it was sent, and the 403 quoted it
    assert "check the API key" in info.value.message and "403" in info.value.message
    assert any(e["event"] == "gemini_key_rejected" for e in logs)
    seen = repr(logs) + caplog.text + repr(info.value.to_dict()) + str(info.value.__cause__)
    assert KEY not in seen and "another-key" not in seen
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_api_key_is_read_from_the_file_before_the_environment(
        make_engine: Make, fake: FakeGemini, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "key-from-environment")
    make_engine("key-from-file").extract(pdf_request(tmp_path, [page_text(1)]))
    assert fake.generate_calls()[0].api_key == "key-from-file"
    monkeypatch.setenv("OCRD_TEST_KEY", "key-from-environment")
    engine = make_engine(api_key_file=None, api_key_env="OCRD_TEST_KEY")
    engine.extract(pdf_request(tmp_path, [page_text(1)]))
    assert fake.generate_calls()[1].api_key == "key-from-environment"
    with pytest.raises(EngineUnavailable, match=r"\$OCRD_NO_SUCH_KEY .*check the API key"):
        make_engine(api_key_file=None, api_key_env="OCRD_NO_SUCH_KEY")
    assert len(fake.generate_calls()) == 2


# --- finish reasons --------------------------------------------------------------------------


def test_max_tokens_on_many_pages_splits_the_chunk_into_pages(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    fake.inject("max_tokens")
    request = pdf_request(tmp_path, [page_text(n) for n in (1, 2, 3)])
    extraction = make_engine().extract(request)
    assert [p.text for p in extraction.pages] == [page_text(n) for n in (1, 2, 3)]
    assert extraction.warnings == []
    assert [len(c.texts) for c in fake.generate_calls()] == [3, 1, 1, 1]


def test_single_page_still_cut_at_max_tokens_keeps_its_text_with_a_warning(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    engine = make_engine(max_output_tokens=8, refusal_retries=1)
    extraction = engine.extract(pdf_request(tmp_path, [page_text(5)], first=5))
    [page] = extraction.pages
    assert page.text and page_text(5).startswith(page.text) and page.text != page_text(5)
    assert extraction.warnings == [
        "page 5: text cut at max_output_tokens (8): the end of the page may be missing"]
    calls = fake.generate_calls()
    assert [c.generation_config["temperature"] for c in calls] == [0.0, 0.35]


@pytest.mark.parametrize("fault", ["recitation", "safety"])
def test_refusal_is_retried_with_other_settings(
        make_engine: Make, fake: FakeGemini, tmp_path: Path, fault: str) -> None:
    fake.inject(fault)
    assert texts_of(make_engine(), pdf_request(tmp_path, [page_text(1)])) == [page_text(1)]
    first, second = fake.generate_calls()
    assert first.generation_config["temperature"] == 0.0 and "safetySettings" not in first.body
    assert second.generation_config["temperature"] > 0 and second.body["safetySettings"]


def test_refusal_that_persists_fails_that_page_with_the_reason(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    fake.inject("recitation", times=100, when="Page 2 of")
    with pytest.raises(PageFailed, match=r"page 2: .*RECITATION, RECITATION, RECITATION"):
        make_engine(refusal_retries=2).extract(
            pdf_request(tmp_path, [page_text(n) for n in (1, 2, 3)]))
    assert [c.fault for c in fake.generate_calls()] == ["recitation", None] + ["recitation"] * 3


# --- the shared rate limiter -----------------------------------------------------------------


def test_limiter_keeps_many_workers_under_the_requests_per_window(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    request = pdf_request(tmp_path, [page_text(1)])
    # 180 per minute measured over 1 s: at most 3 requests in any second, fleet-wide.
    engines = [make_engine(requests_per_minute=180, rate_window=1) for _ in range(4)]
    threads = [threading.Thread(target=lambda e=e: [e.extract(request) for _ in range(3)])
               for e in engines]
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    times = [c.at for c in fake.generate_calls()]
    assert len(times) == 12
    # A request reaches the server some time after the limiter let it through (a busy host
    # can take a second), never before: so by `started + n` s at most 3n have arrived, and
    # the last of 12, let through no earlier than 3 s after the first, arrives after that.
    assert [arrived_by(times, started, n) <= 3 * n for n in (1, 2, 3)] == [True] * 3
    assert max(times) - started >= 3.0


def test_limiter_counts_estimated_tokens(make_engine: Make, fake: FakeGemini,
                                         tmp_path: Path) -> None:
    # A one-page request is estimated at 258 + the prompt's tokens (about 400): 700 tokens a
    # second lets one through per second.
    engine = make_engine(tokens_per_minute=700 * 60, rate_window=1)
    request = pdf_request(tmp_path, [page_text(1)])
    started = time.time()
    for _ in range(3):
        engine.extract(request)
    times = [c.at for c in fake.generate_calls()]
    assert len(times) == 3  # as above: by `started + n` s at most n have arrived
    assert [arrived_by(times, started, n) <= n for n in (1, 2)] == [True] * 2
    assert max(times) - started >= 2.0


def test_limiter_wait_beyond_the_bound_goes_back_to_the_task(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    engine = make_engine(requests_per_minute=1, max_wait=0.5)
    request = pdf_request(tmp_path, [page_text(1)])
    engine.extract(request)
    other = make_engine(requests_per_minute=1, max_wait=0.5)  # another worker's engine
    started = time.monotonic()
    with pytest.raises(TransientEngineError) as info:
        other.extract(request)
    # It gave up after about max_wait (0.5 s), far from the ~60 s the window needs.
    assert 50 < (info.value.retry_after or 0) <= 60 and time.monotonic() - started < 10
    assert len(fake.generate_calls()) == 1


# --- through real daemons --------------------------------------------------------------------


def gemini_env(make_env: Callable[..., Env], fake: FakeGemini, **gemini: Any) -> Env:
    settings = {"base_url": fake.url, "retry_backoff": 0.05, "timeout": 1.5, "max_wait": 20,
                "requests_per_minute": 6000, **gemini}
    return make_env(watch={"engine": "gemini", "chunk_pages": 10, "chunk_threshold_pages": 10},
                    engines={"gemini": settings})


def test_end_to_end_50_pages_through_faults_come_out_complete_and_in_order(
        make_env: Callable[..., Env], fake: FakeGemini, tmp_path: Path) -> None:
    fake.inject("rate_limit", retry_delay="1s")
    fake.inject("unavailable")
    fake.inject("slow", delay=2.5)  # longer than the client's timeout
    fake.inject("max_tokens")
    fake.inject("recitation")
    env = gemini_env(make_env, fake)
    source = make_text_pdf(tmp_path / "book.pdf", [page_text(n) for n in range(1, 51)])
    proc = env.run_daemon(extra_env={"GEMINI_API_KEY": KEY})
    env.drop(source)
    result = env.wait_result("book", timeout=60)
    assert [p["number"] for p in result["pages"]] == list(range(1, 51))
    assert [p["text"] for p in result["pages"]] == [page_text(n) for n in range(1, 51)]
    assert {p["engine"] for p in result["pages"]} == {"gemini"} and result["engine"] == "gemini"
    assert (env.outbox / "book.txt").read_text(encoding="utf-8").split("\f") == [
        page_text(n) for n in range(1, 51)]
    assert fake.faults == []  # every fault was met, and survived
    assert {c.api_key for c in fake.generate_calls()} == {KEY}
    events = [json.loads(line)["event"] for line in proc.output().splitlines()
              if line.startswith("{")]
    assert events.count("gemini_retry") == 3  # 429 after its retryDelay, 503, the timeout
    assert "gemini_page_by_page" in events  # MAX_TOKENS (and RECITATION) on 10 pages
    assert KEY not in proc.output()


def test_bad_key_fails_a_batch_for_at_most_three_requests(
        make_env: Callable[..., Env], fake: FakeGemini, tmp_path: Path) -> None:
    fake.valid_keys = {"the-good-key"}
    env = make_env(watch={"engine": "gemini", "chunk_pages": 2, "chunk_threshold_pages": 2},
                   engines={"gemini": {"base_url": fake.url, "timeout": 2}},
                   workers={"concurrency": 4})
    proc = env.run_daemon(extra_env={"GEMINI_API_KEY": KEY})
    for n in range(10):
        env.drop(make_text_pdf(tmp_path / f"doc{n}.pdf", [page_text(p) for p in range(1, 11)]))
    for n in range(10):
        error = env.wait_error(f"doc{n}", timeout=60)["error"]
        assert error["code"] == "engine_unavailable"
        assert "check the API key" in error["message"], error
    assert 1 <= len(fake.generate_calls()) <= 3  # the key was tried, then no more
    assert KEY not in proc.output()
    assert all(KEY not in p.read_text() for p in env.failed.glob("*.json"))
    assert wait_for(lambda: read_json(env.failed / "doc0.progress.json")["state"] == "failed")


def status_json(env: Env) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "ocr_daemon", "status", "--json", "--config",
                           str(env.config_path)], capture_output=True, text=True, check=True,
                          timeout=60, env=env.env())
    return dict(json.loads(done.stdout))


def test_daily_quota_makes_documents_wait_paused_past_max_retries_then_finish(
        make_env: Callable[..., Env], fake: FakeGemini, tmp_path: Path) -> None:
    fake.inject("daily_quota", times=10_000)  # refused until the quota "resets" below
    max_retries = 1  # were the waits counted as retries, the documents would fail at once
    env = make_env(watch={"engine": "gemini"},
                   engines={"gemini": {"base_url": fake.url, "retry_backoff": 0.05,
                                       "timeout": 2, "requests_per_minute": 6000,
                                       "quota_pause": 3}},
                   workers={"max_retries": max_retries, "retry_backoff": 0.1,
                            "retry_backoff_max": 1})
    proc = env.run_daemon(extra_env={"GEMINI_API_KEY": KEY})
    names = ["quota1", "quota2"]
    for name in names:
        env.drop(make_text_pdf(tmp_path / f"{name}.pdf", [f"{name} {page_text(n)}"
                                                          for n in (1, 2)]))

    def waits() -> list[dict[str, Any]]:
        return [e for e in (json.loads(line) for line in proc.output().splitlines()
                            if line.startswith("{")) if e.get("event") == "waiting"]

    def paused_with_both_waiting() -> dict[str, Any] | None:
        status = status_json(env)
        waiting = [d for d in status["documents"]
                   if (d["waiting"] or {}).get("code") == "engine_paused"]
        ok = status["engines"]["gemini"]["state"] == "paused" and len(waiting) == 2
        return status if ok else None

    status = wait_for(paused_with_both_waiting, 90, interval=0.2,
                      what="status: engine paused, both documents waiting")
    [paused] = status["engines"]["gemini"]["paused"]
    assert paused["quota_id"] == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    assert 0 <= paused["expires_in"] <= 3  # whole seconds left of the 3 s pause (TTL)
    assert {d["name"] for d in status["documents"]} == {f"{n}.pdf" for n in names}
    assert {d["state"] for d in status["documents"]} == {"processing"}
    # Held past max_retries (and Celery's default cap of 3): each document waits 5 times,
    # and the quota is refused again after a pause ran out (more than one pause waited out).
    def held() -> bool:
        per_doc = Counter(e["doc_id"] for e in waits())
        return (len(per_doc) == 2 and min(per_doc.values()) >= max_retries + 4
                and len(fake.generate_calls()) >= 2)

    wait_for(held, 90, what="5 waits of each document, across two pauses")
    assert {e["code"] for e in waits()} == {"engine_paused"}
    assert not any(env.failed.iterdir())  # waiting, not failed after max_retries
    assert not list(env.outbox.glob("quota*[0-9].json"))
    assert all(c.fault == "daily_quota" for c in fake.generate_calls())
    fake.reset()  # the quota resets: the next request after the pause is answered
    for name in names:
        result = env.wait_result(name, timeout=60)
        assert [p["text"] for p in result["pages"]] == [f"{name} {page_text(n)}"
                                                        for n in (1, 2)]
        assert read_json(env.outbox / f"{name}.progress.json")["state"] == "completed"
    assert not any(env.failed.iterdir())
    wait_for(lambda: status_json(env)["engines"]["gemini"]["state"] == "ok", 30,
             what="status: engine ok again")


def test_processes_that_do_not_build_the_gemini_engine_never_import_its_sdk() -> None:
    # google-genai takes 0.7 s to import: run, watch, workers and status start without it.
    code = ("import sys, ocr_daemon.cli, ocr_daemon.service.supervisor, ocr_daemon.delivery.tasks, "
            "ocr_daemon.engines; print('google.genai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
