"""Token and cost accounting: usageMetadata of every response into the result JSON, Prometheus
counters by model and watch, and today's totals in `status`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from ocr_daemon.clock import SystemClock
from ocr_daemon.engines.gemini import usage as gemini_usage
from ocr_daemon.record.state import StateStore
from ocr_daemon.service import metrics
from tests.support.pdfs import make_text_pdf, page_text

from . import test_gemini
from .conftest import Env, RedisServer
from .fake_gemini import TOKENS_PER_PAGE, FakeGemini
from .test_gemini import KEY, Make, pdf_request
from .test_metrics import parse, value

fake = test_gemini.fake  # the fixtures of the gemini engine's tests, shared
make_engine = test_gemini.make_engine
PRICES = {"price_per_million_input": 0.25, "price_per_million_output": 1.5}


def test_a_chunk_records_prompt_output_and_thinking_tokens_of_every_request(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    fake.inject("merge_pages")  # one request for 3 pages, then one per page: 4 billed
    extraction = make_engine(thinking_level="low", **PRICES).extract(
        pdf_request(tmp_path, [page_text(n) for n in (1, 2, 3)]))
    calls = fake.generate_calls()
    assert len(calls) == 4
    usage = extraction.usage
    assert usage is not None
    assert (usage["model"], usage["mode"], usage["requests"]) == (
        "gemini-3.1-flash-lite", "interactive", 4)
    assert usage["prompt_tokens"] == (TOKENS_PER_PAGE * 3 + 100) + 3 * (TOKENS_PER_PAGE + 100)
    assert usage["thinking_tokens"] == 4 * 40  # the fake thinks 40 tokens at LOW
    assert usage["output_tokens"] > 0
    assert usage["total_tokens"] == (usage["prompt_tokens"] + usage["output_tokens"]
                                     + usage["thinking_tokens"])
    billed_output = usage["output_tokens"] + usage["thinking_tokens"]
    assert usage["cost_estimate"] == pytest.approx(
        (usage["prompt_tokens"] * 0.25 + billed_output * 1.5) / 1e6, abs=1e-6)


def test_without_prices_tokens_are_counted_and_no_cost_is_made_up(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    usage = make_engine().extract(pdf_request(tmp_path, [page_text(1)])).usage
    assert usage is not None
    assert usage["requests"] == 1 and usage["thinking_tokens"] == 0  # minimal: no thinking
    assert usage["prompt_tokens"] == TOKENS_PER_PAGE + 100 and usage["cost_estimate"] is None


def test_tokens_count_by_model_and_watch_in_metrics_and_today(
        make_engine: Make, fake: FakeGemini, tmp_path: Path, redis_server: RedisServer,
        key_prefix: str) -> None:
    request = pdf_request(tmp_path, [page_text(1), page_text(2)])
    make_engine(**PRICES).extract(request)
    make_engine(model="gemini-2.5-flash", thinking_budget=100).extract(request)
    client = redis_server.client()
    today = gemini_usage.today(client, key_prefix)
    lite = today["models"]["gemini-3.1-flash-lite"]["interactive"]
    old = today["models"]["gemini-2.5-flash"]["interactive"]
    assert (lite["requests"], lite["prompt_tokens"], lite["thinking_tokens"]) == (
        1, TOKENS_PER_PAGE * 2 + 100, 0)
    assert (old["requests"], old["thinking_tokens"]) == (1, 100)
    assert today["requests"] == 2
    assert today["cost_estimate"] == pytest.approx(lite["cost"], abs=1e-7)  # only the priced model
    from ocr_daemon import config

    cfg = config.parse({"watches": [{"name": "w", "root": str(tmp_path / "root")}]}, tmp_path)
    store = StateStore(client, key_prefix, 3600, SystemClock())
    samples = parse(generate_latest(metrics.registry_for(cfg, store)).decode())
    assert value(samples, "ocrd_gemini_tokens_total", model="gemini-2.5-flash", watch="w",
                 kind="thinking", mode="interactive") == 100
    assert value(samples, "ocrd_gemini_tokens_total", model="gemini-3.1-flash-lite",
                 watch="w", kind="prompt", mode="interactive") == TOKENS_PER_PAGE * 2 + 100
    assert value(samples, "ocrd_gemini_requests_total", model="gemini-3.1-flash-lite",
                 watch="w", mode="interactive") == 1


def test_result_json_and_status_show_tokens_and_cost(
        make_env: Callable[..., Env], fake: FakeGemini, tmp_path: Path) -> None:
    env = make_env(watch={"engine": "gemini", "chunk_pages": 4, "chunk_threshold_pages": 4},
                   engines={"gemini": {"base_url": fake.url, "timeout": 5, **PRICES}})
    env.run_daemon(extra_env={"GEMINI_API_KEY": KEY})
    env.drop(make_text_pdf(tmp_path / "ten.pdf", [page_text(n) for n in range(1, 11)]))
    result = env.wait_result("ten", timeout=60)
    chunks = [c["usage"] for c in result["chunks"]]
    assert [c["requests"] for c in chunks] == [1, 1, 1]
    assert [c["prompt_tokens"] for c in chunks] == [
        TOKENS_PER_PAGE * n + 100 for n in (4, 4, 2)]
    total = result["usage"]
    assert total["requests"] == 3 and total["models"] == ["gemini-3.1-flash-lite"]
    assert total["prompt_tokens"] == sum(c["prompt_tokens"] for c in chunks)
    assert total["output_tokens"] == sum(c["output_tokens"] for c in chunks) > 0
    assert total["cost_estimate"] == pytest.approx(
        sum(c["cost_estimate"] for c in chunks), abs=1e-7)
    done = subprocess.run([sys.executable, "-m", "ocr_daemon", "status", "--json",
                           "--worker-timeout", "0.3", "--config", str(env.config_path)],
                          capture_output=True, text=True, env=env.env(), check=False,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    today = json.loads(done.stdout)["engines"]["gemini"]["today"]
    assert (today["requests"], today["prompt_tokens"]) == (3, total["prompt_tokens"])
    assert today["cost_estimate"] == pytest.approx(total["cost_estimate"], abs=1e-7)
    shown = subprocess.run([sys.executable, "-m", "ocr_daemon", "status", "--worker-timeout",
                            "0.3", "--config", str(env.config_path)], capture_output=True,
                           text=True, env=env.env(), check=False, timeout=60)
    assert "3 requests" in shown.stdout and "at the configured prices" in shown.stdout
