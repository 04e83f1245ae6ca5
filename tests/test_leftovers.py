"""Nothing unseen: what the watcher leaves alone in an inbox is listed, with why, by
`ocr-daemon status` and the metrics; `patterns: ['*']` takes any name, judged by content."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis
from prometheus_client import generate_latest

from ocr_daemon.clock import SystemClock
from ocr_daemon.intake import leftovers
from ocr_daemon.record.state import StateStore
from ocr_daemon.service.metrics import registry_for
from tests.support.pdfs import make_text_pdf, page_text

from .conftest import PYTHON, RESOURCES, Env


def _fill(inbox: Path, tmp: Path) -> dict[str, str]:
    """One entry of every kind the watcher leaves alone; name -> expected reason."""
    inbox.mkdir(parents=True, exist_ok=True)
    pdf = make_text_pdf(tmp / "w.pdf", [page_text(1)], compress=False).read_bytes()
    (inbox / "scan_0001").write_bytes(pdf)  # a scanner's name without an extension
    (inbox / ".upload-1234.part").write_bytes(b"half an upload")
    (inbox / "link.pdf").symlink_to(RESOURCES / "linn.pdf")
    os.mkfifo(inbox / "pipe.pdf")
    (inbox / "cut.pdf").write_bytes(pdf[:len(pdf) // 2])
    old = inbox / "old.pdf"
    old.write_bytes(pdf)
    stale = time.time() - 2 * leftovers.STALE_AFTER
    os.utime(old, (stale, stale))
    (inbox / "fresh.pdf").write_bytes(pdf)  # about to be taken: not listed
    return {"scan_0001": leftovers.NO_PATTERN, ".upload-1234.part": leftovers.IGNORED,
            "link.pdf": leftovers.SYMLINK, "pipe.pdf": leftovers.SPECIAL,
            "cut.pdf": leftovers.INCOMPLETE, "old.pdf": leftovers.NOT_TAKEN}


def test_status_lists_every_inbox_entry_left_alone_with_its_reason(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env()
    expected = _fill(env.inbox, tmp_path)
    out = subprocess.run([PYTHON, "-m", "ocr_daemon", "status", "--json", "--worker-timeout",
                          "0.2", "--config", str(env.config_path)], capture_output=True,
                         text=True, timeout=60, env=env.env(), check=True)
    inbox = json.loads(out.stdout)["inbox"]
    got = {e["path"]: e["reason"] for e in inbox["left_alone"]}
    assert got == expected
    assert all(e["hint"] and e["watch"] == "test" for e in inbox["left_alone"])
    counts = inbox["counts"]["test"]
    assert counts == {r: list(expected.values()).count(r) for r in set(expected.values())}
    human = subprocess.run([PYTHON, "-m", "ocr_daemon", "status", "--worker-timeout", "0.2",
                            "--config", str(env.config_path)], capture_output=True, text=True,
                           timeout=60, env={**env.env(), "COLUMNS": "200"}, check=True).stdout
    assert "Left in the inbox" in human and "scan_0001" in human


def test_metrics_count_the_entries_left_alone_by_reason(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env()
    expected = _fill(env.inbox, tmp_path)
    store = StateStore(redis.Redis.from_url(env.redis_url, decode_responses=True), env.prefix,
                       60, SystemClock())
    text = generate_latest(registry_for(env.cfg, store)).decode()
    for reason in leftovers.REASONS:
        n = list(expected.values()).count(reason)
        assert f'ocrd_inbox_left_alone{{reason="{reason}",watch="test"}} {n}.0' in text


def test_patterns_star_takes_any_name_and_decides_by_content(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch={"patterns": ["*"]})
    env.run_daemon()
    env.drop(make_text_pdf(tmp_path / "x.pdf", ["no extension, still a PDF"]),
             name="scan_0002")
    env.drop(tmp_path / "x.pdf", name="notes.txt")  # any name: the content decides
    assert env.wait_result("scan_0002")["pages"][0]["text"] == "no extension, still a PDF"
    assert env.wait_result("notes")["source"]["mime"] == "application/pdf"
