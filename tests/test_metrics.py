"""Metrics: counters kept in Redis by every process, one scrape of a watcher shows the fleet."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog.testing
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ocr_daemon import config
from ocr_daemon.clock import SystemClock
from ocr_daemon.engines.base import EngineContext, Page, PageRequest, PageText
from ocr_daemon.engines.gemini.guard import Guard
from ocr_daemon.engines.registry import build
from ocr_daemon.record.state import StateStore
from ocr_daemon.service import metrics
from ocr_daemon.service.procs import free_port
from tests.support.pdfs import make_text_pdf, page_text

from .conftest import Env, RedisServer, wait_for
from .fake_gemini import FakeGemini, running
from .test_chunking import slow_stack

CHUNKED = {"chunk_pages": 10, "chunk_threshold_pages": 10}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def pages_pdf(path: Path, count: int) -> Path:
    return make_text_pdf(path, [page_text(n) for n in range(1, count + 1)])


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return parse(response.read().decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_one_scrape_of_the_watcher_shows_the_whole_fleets_work(
        make_env: Callable[..., Env], redis_server: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    env = make_env(watch=CHUNKED, metrics={"enabled": True, "port": port})
    env.start("watch")  # no worker yet: the first document waits in the queue
    wait_for(lambda: _listening(port), 30, what="the metrics endpoint")
    env.drop(pages_pdf(tmp_path / "good.pdf", 30))
    in_flight = wait_for(lambda: value(s := scrape(port), "ocrd_queue_messages",
                                       queue="documents", kind="waiting") == 1 and s, 30,
                         interval=0.1, what="a document's message waiting")
    assert value(in_flight, "ocrd_redis_up") == 1
    assert value(in_flight, "ocrd_documents", watch="test", state="queued") == 1
    assert value(in_flight, "ocrd_queue_messages", queue="chunks", kind="waiting") == 0
    assert value(in_flight, "ocrd_engine_blocked", engine="gemini", reason="key_rejected") == 0
    guard = Guard(redis_server.client(), env.prefix, "fingerprint", "gemini-2.5-flash",
                  probe_ttl=1)
    guard.disable("API_KEY_INVALID")  # what a rejected key leaves for every worker to see
    blocked = scrape(port)
    assert value(blocked, "ocrd_engine_blocked", engine="gemini", reason="key_rejected") == 1
    assert value(blocked, "ocrd_engine_blocked", engine="gemini", reason="daily_quota") == 0
    env.start("worker", "--pool", "threads", "--concurrency", "2")  # another process
    env.wait_result("good", timeout=60)
    # 50 pages whose last ten have no text layer: that chunk fails, and the document with it
    env.drop(make_text_pdf(tmp_path / "bad.pdf", [page_text(n) for n in range(1, 41)]
                           + [""] * 10))
    env.wait_error("bad", timeout=60)
    after = wait_for(lambda: value(s := scrape(port), "ocrd_documents_finished_total",
                                   watch="test", state="failed") == 1 and s, 10,
                     what="the failure counted")
    assert value(after, "ocrd_documents_finished_total", watch="test", state="completed") == 1
    # 30 pages + the 40 good pages of the 50-page document, by the engine that made them
    assert value(after, "ocrd_pages_total", engine="pdftext", watch="test") == 70
    assert value(after, "ocrd_engine_seconds_count", engine="pdftext") == 7  # chunks extracted
    assert value(after, "ocrd_engine_seconds_bucket", engine="pdftext", le="+Inf") == 7
    assert 0 < value(after, "ocrd_engine_seconds_sum", engine="pdftext") < 7 * 2
    assert value(after, "ocrd_engine_errors_total", engine="pdftext", code="no_text_layer") == 1
    assert value(after, "ocrd_pickup_seconds_count", watch="test") == 2
    assert 0.3 <= value(after, "ocrd_pickup_seconds_sum", watch="test") < 10  # settle: 0.3 s
    for state in ("queued", "processing"):
        assert value(after, "ocrd_documents", watch="test", state=state) == 0
    for queue in ("documents", "chunks"):
        assert value(after, "ocrd_queue_messages", queue=queue, kind="waiting") == 0


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_metrics_failure_never_fails_a_document(
        make_env: Callable[..., Env], redis_server: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    env = make_env(watch=CHUNKED, metrics={"enabled": True, "port": port})
    redis_server.client().set(f"{env.prefix}metrics", "not a hash")  # every HINCRBY fails
    stack = slow_stack(env, 0.0)
    env.drop(pages_pdf(tmp_path / "fine.pdf", 25))
    result = env.wait_result("fine", timeout=60)
    assert [p["text"] for p in result["pages"]] == [page_text(n) for n in range(1, 26)]
    assert value(scrape(port), "ocrd_redis_up") == 0  # the scrape still answers
    # the result file is written before the end is counted: wait for the second line
    wait_for(lambda: stack[1].output().count('"metrics_not_recorded"') >= 2, 20,
             what="both metrics failures logged")
    worker_log = stack[1].output()
    assert worker_log.count('"metrics_not_recorded"') == 2  # extracted, finished: once each
    assert "WRONGTYPE" in worker_log


def test_counters_and_histograms_stay_a_fixed_set_of_fields(
        make_env: Callable[..., Env], redis_server: RedisServer) -> None:
    env = make_env()
    store = StateStore(redis_server.client(), env.prefix, 3600, SystemClock())
    pages = [PageText(1, "a", "tesseract"), PageText(2, "b", "pdftext")]

    def record(times: int) -> int:
        for i in range(times):
            metrics.extracted(store, "auto", "test", pages, (i % 50) * 0.7)
            metrics.pickup(store, "test", 1000.0, 1000.0 + i)
            metrics.engine_error(store, "auto", "engine_server_error")
        return int(redis_server.client().hlen(metrics.key(env.prefix)))

    fields = record(500)
    assert record(500) == fields  # more work, no more memory
    most = len(metrics.ENGINE_SECONDS.buckets) + len(metrics.PICKUP_SECONDS.buckets) + 2
    assert fields <= most + 2 + 2 + 1  # + two sums, two page counters, one error counter
    samples = parse(generate_latest(metrics.registry_for(env.cfg, store)).decode())
    assert value(samples, "ocrd_pages_total", engine="tesseract", watch="test") == 1000
    assert value(samples, "ocrd_engine_seconds_count", engine="auto") == 1000
    assert value(samples, "ocrd_engine_seconds_bucket", engine="auto", le="1") == 40
    assert value(samples, "ocrd_pickup_seconds_bucket", watch="test", le="300") == 2 * 301
    assert value(samples, "ocrd_engine_errors_total", engine="auto",
                 code="engine_server_error") == 1000
    metrics.pickup(store, "test", None, 5.0)  # a claim queued by the sweep: not measured
    assert value(parse(generate_latest(metrics.registry_for(env.cfg, store)).decode()),
                 "ocrd_pickup_seconds_count", watch="test") == 1000


def test_metrics_are_off_by_default_and_a_busy_port_is_logged_not_fatal(
        make_env: Callable[..., Env], redis_server: RedisServer) -> None:
    env = make_env()
    store = StateStore(redis_server.client(), env.prefix, 3600, SystemClock())
    assert env.cfg.metrics.enabled is False and metrics.serve(env.cfg, store) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env.write_config(metrics={"enabled": True, "port": taken.getsockname()[1]})
        with structlog.testing.capture_logs() as logs:
            assert metrics.serve(env.cfg, store) is None
    assert [e["event"] for e in logs] == ["metrics_server_failed"]


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with running() as server:
        yield server


def test_gemini_429s_and_rate_limiter_waits_are_counted(
        make_env: Callable[..., Env], redis_server: RedisServer, fake: FakeGemini,
        tmp_path: Path) -> None:
    env = make_env()
    key_file = tmp_path / "key"
    key_file.write_text("AIzaTEST-metrics-key\n", encoding="utf-8")
    cfg = config.parse({
        "state_dir": str(tmp_path / "state"), "redis": {"key_prefix": env.prefix},
        "watches": [{"name": "g", "root": str(tmp_path / "root"), "engine": "gemini"}],
        "engines": {"gemini": {"base_url": fake.url, "api_key_file": str(key_file),
                               "timeout": 2, "retry_backoff": 0.05, "max_wait": 10,
                               "requests_per_minute": 60, "rate_window": 1}},
    }, tmp_path)
    engine = build(EngineContext(cfg, cfg.watches[0], redis_server.client(), env.prefix))
    request = PageRequest(make_text_pdf(tmp_path / "p.pdf", [page_text(1)]), "application/pdf",
                          (Page(1, 0),))
    fake.inject("rate_limit", retry_delay="0.1s")
    for _ in range(2):  # one request a second: the second waits for the limiter
        engine.extract(request)
    store = StateStore(redis_server.client(), env.prefix, 3600, SystemClock())
    samples = parse(generate_latest(metrics.registry_for(cfg, store)).decode())
    model = cfg.engines.gemini.model
    assert value(samples, "ocrd_gemini_rate_limited_total", model=model, kind="minute") == 1
    limiter = f"gemini/{model}"
    assert value(samples, "ocrd_ratelimit_waits_total", limiter=limiter) >= 1
    assert value(samples, "ocrd_ratelimit_wait_seconds_total", limiter=limiter) > 0.3
