"""`ocr-daemon status`: documents advancing, queues, workers, failures, engine flags, live view."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from rich.console import Console

from ocr_daemon import celery_app
from ocr_daemon.clock import SystemClock
from ocr_daemon.commands import status
from ocr_daemon.commands.status_view import render
from ocr_daemon.engines.gemini.guard import Guard
from ocr_daemon.record.state import StateStore
from tests.support.pdfs import make_text_pdf, page_text

from .conftest import PYTHON, Env, RedisServer, wait_for
from .test_chunking import slow_stack

CHUNKED = {"chunk_pages": 10, "chunk_threshold_pages": 10}


def pages_pdf(path: Path, count: int) -> Path:
    return make_text_pdf(path, [page_text(n) for n in range(1, count + 1)])


def status_cmd(env: Env, *args: str) -> list[str]:
    return [PYTHON, "-m", "ocr_daemon", "status", *args, "--config", str(env.config_path)]


def store_of(env: Env, redis_server: RedisServer) -> StateStore:
    return StateStore(redis_server.client(), env.prefix, 3600, SystemClock())


class Lines:
    """The stdout lines of a running command, read in a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)

    def objects(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]


def test_status_follow_json_shows_a_large_documents_chunks_advancing(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch=CHUNKED)
    slow_stack(env, 0.8, concurrency=2)
    follow = subprocess.Popen(status_cmd(env, "--json", "--follow", "--worker-timeout", "0.3"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env.env())
    lines = Lines(follow)
    try:
        wait_for(lambda: any(o["workers"] for o in lines.objects()), 30,
                 what="a worker in status --json")
        env.drop(pages_pdf(tmp_path / "large.pdf", 120))
        env.wait_result("large", timeout=60)
        wait_for(lambda: not lines.objects()[-1]["documents"], 10, what="the document gone")
    finally:
        follow.send_signal(signal.SIGINT)
        _, err = follow.communicate(timeout=20)
    assert follow.returncode == 0 and "Traceback" not in err and "Aborted" not in err
    looks = lines.objects()
    assert {"documents", "queues", "workers", "recent_failures", "engines"} <= set(looks[0])
    docs = [o["documents"][0] for o in looks if o["documents"]]
    assert docs and {d["name"] for d in docs} == {"large.pdf"}
    completed = [d["chunks"]["completed"] for d in docs if d["state"] == "processing"]
    assert completed == sorted(completed), completed  # never goes backwards
    assert len({c for c in completed if 0 < c < 12}) >= 2, completed  # seen advancing
    assert {d["chunks"]["total"] for d in docs if d["chunks"]["total"]} == {12}
    percentages = [d["progress_percentage"] for d in docs]
    assert percentages == sorted(percentages) and max(percentages) < 100
    assert any(o["queues"]["chunks"]["waiting"] > 0 for o in looks)
    assert any(o["queues"]["chunks"]["unacked"] > 0 for o in looks)
    [worker] = looks[-1]["workers"]
    assert worker["pool"] == "threads" and worker["concurrency"] == 2
    assert worker["queues"] == ["chunks", "default", "documents"]
    assert looks[-1]["engines"]["gemini"]["state"] == "ok"


def test_status_lists_recent_failures_with_their_error_code_and_chunk_errors(
        make_env: Callable[..., Env], redis_server: RedisServer, tmp_path: Path) -> None:
    env = make_env(watch=CHUNKED)
    slow_stack(env, 1.0, concurrency=1, failing_pages=[15])  # one chunk a second, in order
    env.drop(pages_pdf(tmp_path / "broken.pdf", 50))
    # While it runs: its failed chunk shows as a chunk error of a document still processing
    # (three more chunks take three seconds after the failed one).
    store = store_of(env, redis_server)
    [live] = wait_for(lambda: [d for d in status.documents(store) if d["errors"]], 60,
                      interval=0.1, what="a chunk error while the document runs")
    assert live["name"] == "broken.pdf" and live["state"] == "processing"
    assert [(e["chunk"], e["code"]) for e in live["errors"]] == [(1, "page_failed")]
    assert live["chunks"]["completed"] < 4
    env.wait_error("broken", timeout=90)
    done = subprocess.run(status_cmd(env, "--json", "--worker-timeout", "0.3"),
                          capture_output=True, text=True, env=env.env(), timeout=60, check=True)
    [failure] = json.loads(done.stdout)["recent_failures"]
    assert failure["name"] == "broken.pdf" and failure["state"] == "failed"
    assert failure["doc_id"] == live["doc_id"]
    assert failure["code"] == "page_failed" and "1 of 5 chunks failed" in failure["message"]


def test_queue_depths_count_every_queue_and_priority_sub_queue(
        make_env: Callable[..., Env], redis_server: RedisServer) -> None:
    env = make_env()
    celery_app.configure(env.cfg, redis_server.url)
    from ocr_daemon.delivery.tasks import process_chunk, process_document

    process_document.apply_async(("test", "doc-a"))
    process_document.apply_async(("test", "doc-b"), priority=9)
    process_chunk.apply_async(("test", "doc-a", 0))
    depths = status.queue_depths(redis_server.client(), env.prefix)
    assert depths["documents"] == {"waiting": 2, "unacked": 0}
    assert depths["chunks"] == {"waiting": 1, "unacked": 0}
    assert depths["default"] == {"waiting": 0, "unacked": 0}
    assert redis_server.client().llen(f"{env.prefix}documents") == 1  # one went to a sub-queue


def test_status_shows_the_gemini_engine_disabled_or_paused(
        make_env: Callable[..., Env], redis_server: RedisServer) -> None:
    env = make_env()
    client: redis.Redis = redis_server.client()
    guard = Guard(client, env.prefix, "f1ngerprint", "gemini-2.5-flash", probe_ttl=5)
    store = store_of(env, redis_server)
    assert status.gather(store).engines["gemini"]["state"] == "ok"
    guard.pause(600, "GenerateRequestsPerDayPerProjectPerModel-FreeTier")
    paused = status.gather(store)
    assert paused.engines["gemini"]["state"] == "paused"
    assert paused.engines["gemini"]["paused"][0]["model"] == "gemini-2.5-flash"
    guard.disable("API_KEY_INVALID")
    looked = status.gather(store)
    gem = looked.engines["gemini"]
    assert gem["state"] == "disabled" and gem["disabled"][0]["reason"] == "API_KEY_INVALID"
    console = Console(record=True, width=160)
    console.print(render(looked))
    text = console.export_text()
    assert "DISABLED, the API key was rejected (API_KEY_INVALID)" in text


def test_status_view_draws_a_progress_bar_and_chunk_errors_per_document() -> None:
    look = status.Status(
        documents=[{"doc_id": "d1", "watch": "scans", "name": "ledger-1998.pdf",
                    "state": "processing", "progress_percentage": 45,
                    "chunks": {"total": 10, "queued": 4, "processing": 1, "completed": 4,
                               "failed": 1},
                    "errors": [{"chunk": 7, "pages": [71, 80], "state": "failed",
                                "attempts": 4, "code": "page_failed",
                                "message": "page 75: Gemini gave no text"}],
                    "waiting": None, "task_id": "t", "created_at": None,
                    "started_at": None, "updated_at": None}],
        queues={"documents": {"waiting": 0, "unacked": 1},
                "chunks": {"waiting": 5, "unacked": 2},
                "default": {"waiting": 0, "unacked": 0}},
        workers=[], recent_failures=[], engines={"gemini": {"state": "ok"}},
        generated_at="2026-12-02T02:00:00.000Z")
    console = Console(record=True, width=160)
    console.print(render(look))
    text = console.export_text()
    row = next(line for line in text.splitlines() if "ledger-1998.pdf" in line)
    assert "scans" in row and "processing" in row and "45%" in row and "━" in row
    assert "4/10 (1 failed)" in row and "#7 page_failed: page 75" in row
    assert "No worker answered." in text


def test_status_follow_redraws_in_a_terminal_and_ctrl_c_exits_cleanly(
        make_env: Callable[..., Env]) -> None:
    env = make_env()
    main, child = pty.openpty()
    proc = subprocess.Popen(status_cmd(env, "--follow", "--worker-timeout", "0.2"),
                            stdin=child, stdout=child, stderr=child, env={
                                **env.env(), "COLUMNS": "120", "TERM": "xterm"},
                            start_new_session=True)
    os.close(child)
    screen = b""

    def read() -> bytes:
        nonlocal screen
        while select.select([main], [], [], 0.05)[0]:
            try:
                screen += os.read(main, 65536)
            except OSError:
                break
        return screen

    try:
        wait_for(lambda: read().count(b"Queues") >= 2, 30, what="two redraws")
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(20)
        time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
        text = read().decode(errors="replace")
        os.close(main)
    assert proc.returncode == 0, text[-2000:]
    assert "No documents in flight." in text and "Traceback" not in text
    assert "Aborted" not in text
