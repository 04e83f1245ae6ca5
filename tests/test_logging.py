"""Logs: JSON lines off a terminal, each line of work names its document, chunk and task, and
no secret (API key, webhook secret, credentials in a URL) ever appears."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ocr_daemon.service.procs import free_port
from tests.support.pdfs import make_text_pdf, page_text

from .conftest import PYTHON, Env, wait_for
from .fake_gemini import FakeGemini, running

API_KEY = "AIza-SECRET-api-key-0123456789abcdef"
WEBHOOK_SECRET = "whsec-SECRET-4f9a1c"
URL_PASSWORD = "urlpass-SECRET-77"
URL_TOKEN = "tok-SECRET-99"
SECRETS = (API_KEY, WEBHOOK_SECRET, URL_PASSWORD, URL_TOKEN)


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with running() as server:
        yield server


def log_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines()]


def test_a_daemons_logs_are_json_lines_that_name_the_work_and_hide_every_secret(
        make_env: Callable[..., Env], fake: FakeGemini, tmp_path: Path) -> None:
    closed = free_port()  # nothing listens: the webhook fails, and says so without secrets
    hook = f"http://ocr:{URL_PASSWORD}@127.0.0.1:{closed}/hook?token={URL_TOKEN}"
    env = make_env(
        logging={"level": "info", "format": "auto"},  # auto: JSON, as stderr is not a tty
        watch={"engine": "gemini", "chunk_pages": 10, "chunk_threshold_pages": 10,
               "webhook": {"url": hook, "secret": WEBHOOK_SECRET, "retries": 0}},
        engines={"gemini": {"base_url": fake.url, "retry_backoff": 0.05, "timeout": 5,
                            "requests_per_minute": 6000}})
    fake.inject("rate_limit", retry_delay="0.2s")  # a retry logged by the engine mid-chunk
    proc = env.run_daemon(extra_env={"GEMINI_API_KEY": API_KEY})
    env.drop(make_text_pdf(tmp_path / "book.pdf", [page_text(n) for n in range(1, 26)]))
    result = env.wait_result("book", timeout=60)
    wait_for(lambda: '"webhook_failed"' in proc.output(), 30, what="webhook_failed")
    lines = log_lines(proc.output())  # every line parses: JSON lines, nothing else
    doc_id = result["doc_id"]

    done = [e for e in lines if e["event"] == "chunk_done"]
    assert sorted(e["chunk"] for e in done) == [0, 1, 2]
    for e in done:
        assert e["doc_id"] == doc_id and e["watch"] == "test" and e["task_id"]
    [retry] = [e for e in lines if e["event"] == "gemini_retry"]  # the engine's own logger
    assert retry["doc_id"] == doc_id and retry["watch"] == "test"
    assert retry["chunk"] in (0, 1, 2) and retry["task_id"]
    chunk_tasks = {e["task_id"] for e in done}
    assert len(chunk_tasks) == 3  # one task per chunk, each named on its lines
    succeeded = [e for e in lines if e.get("logger") == "celery.app.trace"
                 and "process_chunk" in e["event"] and "succeeded" in e["event"]]
    assert {e["task_id"] for e in succeeded} == chunk_tasks  # Celery's lines too
    assert all(e["doc_id"] == doc_id for e in succeeded)
    [failed] = [e for e in lines if e["event"] == "webhook_failed"]
    assert failed["url"] == f"http://127.0.0.1:{closed}/hook" and failed["doc_id"] == doc_id
    assert "Connection refused" in failed["result"]

    text = proc.output()
    for secret in SECRETS:
        assert secret not in text
    assert {c.api_key for c in fake.generate_calls()} == {API_KEY}  # it was used, not shown
    shown = subprocess.run([PYTHON, "-m", "ocr_daemon", "config", "check", "--config",
                            str(env.config_path)], capture_output=True, text=True, check=True,
                           env={**env.env(), "GEMINI_API_KEY": API_KEY}, timeout=60)
    for secret in SECRETS:
        assert secret not in shown.stdout + shown.stderr
    assert f"http://ocr:***@127.0.0.1:{closed}/hook?***" in shown.stdout
