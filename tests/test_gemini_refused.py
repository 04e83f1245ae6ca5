"""A configuration Gemini refuses (model not found, thinking setting, media) is reported once,
fleet-wide, naming the key to fix; `config check --online` asks the API about key and model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from ocr_daemon.engines.gemini import guard as gemini_guard
from ocr_daemon.errors import EngineUnavailable, SettingRefused
from tests.support.pdfs import make_text_pdf, page_text

from . import test_gemini
from .conftest import Env, RedisServer, read_json
from .fake_gemini import FakeGemini
from .test_gemini import KEY, Make, pdf_request, texts_of

fake = test_gemini.fake  # the fixtures of the gemini engine's tests, shared
make_engine = test_gemini.make_engine


def refused_by(engine_call: Callable[[], object]) -> SettingRefused:
    with pytest.raises(SettingRefused) as info:
        engine_call()
    return info.value


def test_model_not_found_stops_every_worker_after_one_request_naming_the_key(
        make_engine: Make, fake: FakeGemini, tmp_path: Path, redis_server: RedisServer,
        key_prefix: str) -> None:
    request = pdf_request(tmp_path, [page_text(1), page_text(2)])
    for _worker in range(3):
        error = refused_by(lambda: make_engine(model="gemini-9-flash").extract(request))
        assert isinstance(error, EngineUnavailable) and error.code == "engine_unavailable"
        assert error.key == "engines.gemini.model" and "engines.gemini.model" in error.hint
        assert "gemini-9-flash" in error.message and "not found" in error.message
    assert len(fake.generate_calls()) == 1
    [refused] = gemini_guard.status(redis_server.client(), key_prefix)["refused"]
    assert (refused["model"], refused["key"], refused["reason"]) == (
        "gemini-9-flash", "engines.gemini.model", "model_not_found")
    assert 3500 < refused["expires_in"] <= 3600
    # The configuration changed: the new model is tried at once, and works.
    assert texts_of(make_engine(model="gemini-3.5-flash"), request) == [
        page_text(1), page_text(2)]


def test_a_retired_model_is_refused_like_an_unknown_one(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    fake.retired.add("gemini-2.5-flash")
    error = refused_by(lambda: make_engine(model="gemini-2.5-flash").extract(
        pdf_request(tmp_path, [page_text(1)])))
    assert error.reason == "model_not_found" and error.key == "engines.gemini.model"


def test_a_refused_thinking_setting_names_the_thinking_key_once(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    request = pdf_request(tmp_path, [page_text(n) for n in range(1, 4)])
    for _worker in range(3):
        error = refused_by(lambda: make_engine(model="gemini-2.5-pro",
                                               thinking_budget=0).extract(request))
        assert error.key == "engines.gemini.thinking_budget"
        assert error.reason == "thinking_refused" and "thinking_budget 0" in error.message
        assert "Budget 0 is invalid" in error.message
    [call] = fake.generate_calls()  # not one per page: the chunk was never split
    assert call.thinking == {"thinkingBudget": 0}
    # The default for that model (no thinking setting) is a zero budget too: still refused,
    # but a budget the model takes is a new configuration, tried at once.
    assert texts_of(make_engine(model="gemini-2.5-pro", thinking_budget=128), request) == [
        page_text(n) for n in range(1, 4)]


def test_a_refused_media_type_names_the_model_key(
        make_engine: Make, fake: FakeGemini, tmp_path: Path) -> None:
    fake.inject("media_refused")
    error = refused_by(lambda: make_engine().extract(pdf_request(tmp_path, [page_text(1)])))
    assert (error.key, error.reason) == ("engines.gemini.model", "media_refused")
    assert "application/pdf" in error.message


def test_refused_model_fails_a_batch_for_at_most_three_requests_and_status_shows_it(
        make_env: Callable[..., Env], fake: FakeGemini, tmp_path: Path) -> None:
    env = make_env(watch={"engine": "gemini", "chunk_pages": 2, "chunk_threshold_pages": 2},
                   engines={"gemini": {"base_url": fake.url, "timeout": 2,
                                       "model": "gemini-2.0-flash-lite"}},
                   workers={"concurrency": 4})
    proc = env.run_daemon(extra_env={"GEMINI_API_KEY": KEY})
    for n in range(10):
        env.drop(make_text_pdf(tmp_path / f"doc{n}.pdf", [page_text(p) for p in range(1, 11)]))
    for n in range(10):
        error = env.wait_error(f"doc{n}", timeout=90)["error"]
        assert error["code"] == "engine_unavailable", error
        assert "engines.gemini.model" in error["hint"], error
    assert len(fake.generate_calls()) <= 3
    assert read_json(env.failed / "doc0.error.json")["error"]["retryable"] is False
    done = subprocess.run([sys.executable, "-m", "ocr_daemon", "status", "--json",
                           "--worker-timeout", "0.3", "--config", str(env.config_path)],
                          capture_output=True, text=True, env=env.env(), check=False,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    gem = json.loads(done.stdout)["engines"]["gemini"]
    assert gem["state"] == "disabled"
    assert [(r["model"], r["key"]) for r in gem["refused"]] == [
        ("gemini-2.0-flash-lite", "engines.gemini.model")]
    assert KEY not in proc.output()


def config_check(tmp_path: Path, fake: FakeGemini, key: str | None,
                 **gemini: object) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({
        "watches": [{"name": "w", "root": "r"}],
        "engines": {"gemini": {"base_url": fake.url, "timeout": 5, **gemini}}}))
    environ = {k: v for k, v in os.environ.items() if k != "GEMINI_API_KEY"}
    if key is not None:
        environ["GEMINI_API_KEY"] = key
    return subprocess.run([sys.executable, "-m", "ocr_daemon", "config", "check", "--online",
                           "--config", str(path)], capture_output=True, text=True,
                          env=environ, check=False, timeout=60)


def test_config_check_online_says_key_and_model_work_with_their_token_limits(
        tmp_path: Path, fake: FakeGemini) -> None:
    done = config_check(tmp_path, fake, KEY)
    assert done.returncode == 0, done.stderr
    assert "gemini: API key ok" in done.stdout
    assert "gemini: model gemini-3.1-flash-lite ok" in done.stdout
    assert "input token limit 1048576, output token limit 65536" in done.stdout
    assert [c.kind for c in fake.calls] == ["model_get"]  # one call, and no generation
    assert KEY not in done.stdout + done.stderr


def test_config_check_online_reports_a_wrong_model_or_key_and_exits_8(
        tmp_path: Path, fake: FakeGemini) -> None:
    done = config_check(tmp_path, fake, KEY, model="gemini-9-flash")
    assert done.returncode == 8
    assert "gemini: API key ok" in done.stdout
    assert "gemini: model gemini-9-flash not found" in done.stdout
    assert "engines.gemini.model" in done.stdout
    fake.valid_keys = {"the-good-key"}
    done = config_check(tmp_path, fake, KEY)
    assert done.returncode == 8 and "gemini: API key rejected" in done.stdout
    done = config_check(tmp_path, fake, None)
    assert done.returncode == 8 and "gemini: API key not set" in done.stdout
    assert len([c for c in fake.calls if c.kind == "model_get"]) == 2
