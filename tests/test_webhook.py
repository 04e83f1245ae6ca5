"""Webhooks: the final progress JSON POSTed on each ending, signed, retried; never in the way."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.engines import use_sleeping
from tests.support.pdfs import make_text_pdf, page_text

from .conftest import PYTHON, Env, read_json, wait_for
from .test_chunking import slow_stack

CHUNKED = {"chunk_pages": 10, "chunk_threshold_pages": 10}
SECRET = "whsec-test-0123456789"


def pages_pdf(path: Path, count: int) -> Path:
    return make_text_pdf(path, [page_text(n) for n in range(1, count + 1)])


@dataclass
class Hit:
    path: str
    headers: Message  # case-insensitive
    body: bytes
    at: float
    files: list[str]  # the files under the watch root when the request came
    method: str = "POST"

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver(ThreadingHTTPServer):
    """A webhook receiver: /ok answers 200, /flaky fails twice first, /hang never answers,
    /slow answers 200 once released, /by-name answers ``answers[<source name>]``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: list[Hit] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.root: Path | None = None  # the watch root whose files each hit records
        self.answers: dict[str, int] = {}
        self.answered = 0

    def files(self) -> list[str]:
        if self.root is None:
            return []
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*")
                      if p.is_file())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def count(self, path: str) -> int:
        return sum(1 for h in self.hits if h.path == path)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        files = self.server.files()  # first: what exists at the moment of the request
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.hits.append(Hit(self.path, self.headers, body, time.monotonic(), files))
            seen = self.server.count(self.path)
        if self.path == "/hang":
            self.server.release.wait(30)
            return  # closes the connection without an answer
        if self.path == "/slow":
            self.server.release.wait(120)
        status = 500 if self.path == "/flaky" and seen <= 2 else 200
        if self.path == "/by-name":
            status = self.server.answers[json.loads(body)["source"]["name"]]
        self.send_response(status)
        if status in (301, 302, 303, 307, 308):
            self.send_header("Location", "/ok")  # followed, it would show as a hit on /ok
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
        with self.server.lock:
            self.server.answered += 1

    def do_GET(self) -> None:  # what a followed redirect of the POST would become
        with self.server.lock:
            self.server.hits.append(Hit(self.path, self.headers, b"", time.monotonic(), [],
                                        "GET"))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def hooked_env(make_env: Callable[..., Env], receiver: Receiver, path: str,
               **hook: Any) -> Env:
    return make_env(watch={**CHUNKED, "webhook": {"url": receiver.url + path, **hook}})


def events(proc_output: str, name: str) -> list[dict[str, Any]]:
    return [e for e in (json.loads(line) for line in proc_output.splitlines()
                        if line.startswith("{")) if e.get("event") == name]


def test_webhook_posts_the_final_progress_json_of_each_ending_signed(
        make_env: Callable[..., Env], receiver: Receiver, tmp_path: Path) -> None:
    url = receiver.url.replace("http://", "http://hook:pw%2F1@") + "/ok"  # Basic auth
    # One chunk in flight at a time: the 200-page document then runs for 20 windows, well
    # past the few seconds a cancel command takes to start on a loaded machine (with every
    # chunk in flight at once it ended before the cancel arrived).
    env = make_env(watch={**CHUNKED, "chunks_in_flight": 1,
                          "webhook": {"url": url, "secret": SECRET}})
    slow_stack(env, 0.4, failing_pages=[35])
    env.drop(pages_pdf(tmp_path / "good.pdf", 5))
    env.drop(pages_pdf(tmp_path / "bad.pdf", 40))
    env.wait_result("good", timeout=60)
    env.wait_error("bad", timeout=60)
    env.drop(pages_pdf(tmp_path / "long.pdf", 600))  # ~12 s of chunks: time for `cancel`
    progress = env.outbox / "long.progress.json"
    wait_for(lambda: progress.exists() and read_json(progress)["chunks"]["completed"] >= 1, 60,
             what="long.pdf under way")
    subprocess.run([PYTHON, "-m", "ocr_daemon", "cancel", read_json(progress)["doc_id"],
                    "--config", str(env.config_path)], check=True, capture_output=True,
                   timeout=60, env=env.env())
    wait_for(lambda: receiver.count("/ok") >= 3, 30, what="three webhooks")
    time.sleep(0.5)
    by_state = {h.json()["state"]: h for h in receiver.hits}
    assert sorted(by_state) == ["cancelled", "completed", "failed"] and len(receiver.hits) == 3
    finals = {"completed": env.outbox / "good.progress.json",
              "failed": env.failed / "bad.progress.json",
              "cancelled": env.failed / "long.progress.json"}
    for state, hit in by_state.items():
        # The final progress JSON as written (a chunk of the cancelled document that was in
        # its engine call may rewrite the file once more, with a later updated_at).
        sent, final = hit.json(), read_json(finals[state])
        assert {**sent, "updated_at": None} == {**final, "updated_at": None}
        assert hit.headers["Content-Type"] == "application/json"
        assert hit.headers["X-OCR-Daemon-Event"] == f"document.{state}"
        assert hit.headers["X-OCR-Daemon-Doc-Id"] == hit.json()["doc_id"]
        expected = hmac.new(SECRET.encode(), hit.body, hashlib.sha256).hexdigest()
        assert hit.headers["X-OCR-Daemon-Signature"] == f"sha256={expected}"
        assert hit.headers["Authorization"] == "Basic " + base64.b64encode(b"hook:pw/1").decode()
    assert by_state["failed"].json()["error"]["code"] == "page_failed"
    assert by_state["cancelled"].json()["error"]["code"] == "cancelled"


def test_webhook_retries_a_receiver_that_fails_twice_then_answers(
        make_env: Callable[..., Env], receiver: Receiver, tmp_path: Path) -> None:
    env = hooked_env(make_env, receiver, "/flaky", retries=3)
    worker = slow_stack(env, 0.0)[1]
    env.drop(pages_pdf(tmp_path / "doc.pdf", 3))
    env.wait_result("doc", timeout=60)
    wait_for(lambda: events(worker.output(), "webhook_sent"), 30, what="webhook_sent")
    hits = [h for h in receiver.hits if h.path == "/flaky"]
    assert len(hits) == 3 and len({h.body for h in hits}) == 1  # the same event each time
    assert hits[1].at - hits[0].at >= 0.1 and hits[2].at - hits[1].at >= 0.1  # backoff
    retries = events(worker.output(), "webhook_retry")
    assert [(r["attempts"], r["result"]) for r in retries] == [(1, "HTTP 500"), (2, "HTTP 500")]
    [sent] = events(worker.output(), "webhook_sent")
    assert sent["attempts"] == 3 and sent["result"] == "HTTP 200"
    assert sent["url"] == receiver.url + "/flaky" and sent["doc_id"] == hits[0].json()["doc_id"]


def test_webhook_receiver_that_never_answers_does_not_hold_up_documents(
        make_env: Callable[..., Env], receiver: Receiver, tmp_path: Path) -> None:
    env = hooked_env(make_env, receiver, "/hang", timeout=1, retries=1)
    worker = slow_stack(env, 0.0)[1]
    env.drop(pages_pdf(tmp_path / "first.pdf", 3))
    result = env.wait_result("first", timeout=60)
    assert read_json(env.outbox / "first.progress.json")["state"] == "completed"
    wait_for(lambda: receiver.count("/hang") >= 1, 20, what="the webhook sent")
    env.drop(pages_pdf(tmp_path / "second.pdf", 3))  # while the receiver hangs
    env.wait_result("second", timeout=30)
    failed = wait_for(lambda: [e for e in events(worker.output(), "webhook_failed")
                               if e["doc_id"] == result["doc_id"]], 30, what="webhook_failed")
    assert failed[0]["attempts"] == 2 and "timed out" in failed[0]["result"]
    wait_for(lambda: receiver.count("/hang") >= 3, 20, what="the second's webhook tried too")


def test_webhook_comes_after_the_terminal_files_and_a_slow_receiver_holds_up_no_document(
        make_env: Callable[..., Env], receiver: Receiver, tmp_path: Path) -> None:
    env = make_env(watch={"webhook": {"url": receiver.url + "/slow", "timeout": 120,
                                      "retries": 0}})
    receiver.root = env.root
    # Documents on one worker slot, webhooks on another: a POST made inside a document's
    # ending would hold the only document slot for as long as the receiver takes.
    use_sleeping(env, failing_pages=[3])
    env.start("worker", "--queues", "documents,chunks", "--pool", "threads", "--concurrency",
              "1")
    env.start("worker", "--queues", "default", "--pool", "threads", "--concurrency", "1")
    env.start("watch")
    env.drop(make_text_pdf(tmp_path / "first.pdf", [page_text(1), page_text(2)]))
    first = env.wait_result("first", timeout=60)
    wait_for(lambda: receiver.count("/slow") == 1, 30, what="the first webhook")
    env.drop(make_text_pdf(tmp_path / "bad.pdf", [page_text(n) for n in (1, 2, 3)]))
    env.drop(make_text_pdf(tmp_path / "second.pdf", [page_text(4), page_text(5)]))
    # Both end, with their result and error JSON, while the receiver still holds the first
    # webhook's request unanswered.
    bad = env.wait_error("bad", timeout=60)
    second = env.wait_result("second", timeout=60)
    assert receiver.answered == 0 and receiver.count("/slow") == 1
    receiver.release.set()
    wait_for(lambda: receiver.answered == 3, 60, what="the three webhooks answered")
    by_doc = {h.json()["doc_id"]: h for h in receiver.hits}
    assert sorted(by_doc) == sorted(d["doc_id"] for d in (first, second, bad))
    terminal = {  # every file of each ending, and no record left in processing/
        first["doc_id"]: ["outbox/first.json", "outbox/first.txt",
                          "outbox/first.progress.json", "archive/first.pdf"],
        second["doc_id"]: ["outbox/second.json", "outbox/second.txt",
                           "outbox/second.progress.json", "archive/second.pdf"],
        bad["doc_id"]: ["failed/bad.error.json", "failed/bad.progress.json", "failed/bad.pdf"],
    }
    for doc_id, names in terminal.items():
        hit = by_doc[doc_id]
        assert set(names) <= set(hit.files), (hit.json()["state"], hit.files)
        assert not [f for f in hit.files if f.startswith(f"processing/{doc_id}")], hit.files
    assert by_doc[bad["doc_id"]].json()["state"] == "failed"
    assert by_doc[second["doc_id"]].json()["state"] == "completed"


def test_webhook_4xx_answers_and_redirects_are_sent_once_and_not_retried(
        make_env: Callable[..., Env], receiver: Receiver, tmp_path: Path) -> None:
    env = hooked_env(make_env, receiver, "/by-name", retries=3)
    receiver.answers = {"gone.pdf": 410, "bad.pdf": 400, "moved.pdf": 302, "temp.pdf": 307,
                        "fine.pdf": 500}
    worker = slow_stack(env, 0.0)[1]
    for n, name in enumerate(receiver.answers):
        env.drop(pages_pdf(tmp_path / name, n + 1))
    for name in receiver.answers:
        env.wait_result(name[: -len(".pdf")], timeout=60)
    # Each delivery ends with webhook_failed (or webhook_sent): after that no retry comes.
    def last_attempts() -> list[dict[str, Any]]:
        out = worker.output()
        return events(out, "webhook_failed") + events(out, "webhook_sent")

    wait_for(lambda: len(last_attempts()) == 5, 60, what="the last attempt of each webhook")
    posts = [h for h in receiver.hits if h.path == "/by-name"]
    counts = {name: sum(1 for h in posts if h.json()["source"]["name"] == name)
              for name in receiver.answers}
    assert counts == {"gone.pdf": 1, "bad.pdf": 1, "moved.pdf": 1, "temp.pdf": 1,
                      "fine.pdf": 4}  # 5xx, the control: the first try and 3 retries
    assert receiver.count("/ok") == 0 and len(receiver.hits) == 8  # no redirect followed
    failed = last_attempts()
    assert {e["event"] for e in failed} == {"webhook_failed"}
    assert {e["result"] for e in failed} == {"HTTP 410", "HTTP 400", "HTTP 302", "HTTP 307",
                                            "HTTP 500"}
    assert sorted(e["attempts"] for e in failed) == [1, 1, 1, 1, 4]
