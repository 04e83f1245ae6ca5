"""Faults: poison documents, cancel, retry, a full disk, a power cut, housekeeping."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ocr_daemon import config as config_mod
from ocr_daemon.clock import SystemClock
from ocr_daemon.commands.status import queue_depths
from ocr_daemon.intake import housekeeping
from ocr_daemon.record.layout import WatchPaths
from ocr_daemon.record.state import StateStore
from ocr_daemon.redis_conn import client
from tests.support.engines import use_sleeping
from tests.support.pdfs import drawn_page, image_pdf, make_text_pdf, page_text

from .conftest import PYTHON, Env, read_json, wait_for

CHUNKED = {"chunk_pages": 10, "chunk_threshold_pages": 10}


def pages_pdf(path: Path, count: int) -> Path:
    return make_text_pdf(path, [page_text(n) for n in range(1, count + 1)])


def cli(env: Env, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "ocr_daemon", *args, "--config", str(env.config_path)],
                          capture_output=True, text=True, check=check, timeout=60)


@pytest.mark.slow
def test_poison_chunk_that_kills_its_worker_every_time_fails_after_the_cap(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch=CHUNKED, workers={"max_redeliveries": 2})
    use_sleeping(env, crash_pages=[15], crash_times=100, counter_dir=env.tmp / "counters")
    env.start("worker", "--pool", "prefork", "--concurrency", "2")
    env.start("watch")
    env.drop(pages_pdf(tmp_path / "poison.pdf", 30))
    error = env.wait_error("poison", timeout=120)
    assert error["error"]["code"] == "worker_crashed"
    [chunk] = error["chunk_errors"]
    assert chunk["pages"] == [11, 20] and "died 3 times" in chunk["error"]["message"]
    crashes = int((env.tmp / "counters" / f"crash-{error['doc_id']}-11").read_text())
    assert crashes == 3  # the first delivery and two redeliveries, then no more
    partial = (env.failed / "poison.partial.txt").read_text().split("\f")
    assert partial[0] == page_text(1) and partial[25] == page_text(26)


def test_cancel_stops_a_running_document_before_its_remaining_chunks_call_the_engine(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch=CHUNKED)
    counters = env.tmp / "counters"
    use_sleeping(env, latency=1.0, counter_dir=counters)
    env.start("worker", "--pool", "threads", "--concurrency", "2")
    env.start("watch")
    chunks = 30  # 2 engine calls a second: ~15 s, time for `cancel` to start on a busy host
    source = pages_pdf(tmp_path / "long.pdf", chunks * CHUNKED["chunk_pages"])
    env.drop(source)
    progress = env.outbox / "long.progress.json"
    wait_for(lambda: progress.exists() and read_json(progress)["chunks"]["completed"] >= 1, 60,
             what="a first chunk")
    doc_id = read_json(progress)["doc_id"]

    def engine_calls() -> int:  # the fake engine counts each call as it starts
        return len([p for p in counters.iterdir() if p.name.startswith(doc_id)])

    done = cli(env, "cancel", doc_id)
    assert "cancelled" in done.stdout
    at_cancel = engine_calls()
    error = read_json(env.failed / "long.error.json")
    assert error["state"] == "cancelled" and error["error"]["code"] == "cancelled"
    assert (env.failed / "long.pdf").read_bytes() == source.read_bytes()
    assert read_json(env.failed / "long.progress.json")["state"] == "cancelled"
    assert not progress.exists()
    # Chunks in an engine call when it was cancelled finish; the queued ones are taken and
    # end without calling the engine: wait until the broker holds no message of it at all.
    wait_for(lambda: broker_idle(env), 60, what="every queued chunk taken and ended")
    assert engine_calls() == at_cancel < chunks  # the remaining chunks never called it
    assert not (env.processing / doc_id).exists()


def broker_idle(env: Env) -> bool:
    """No message waiting in any queue, none held unacknowledged by a worker."""
    depths = queue_depths(client(env.redis_url), env.prefix)
    return all(d["waiting"] == 0 and d["unacked"] == 0 for d in depths.values())


def test_cancel_a_queued_document_by_the_path_it_was_dropped_at(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env()
    listener = env.listener()
    env.start("watch", notify=listener)  # no worker: it stays queued
    listener.wait("READY=1")
    dropped = env.drop(make_text_pdf(tmp_path / "q.pdf", ["queued"]))
    wait_for(lambda: any(env.processing.iterdir()), 20, what="the claim")
    time.sleep(0.5)
    done = cli(env, "cancel", str(dropped))
    assert "cancelled" in done.stdout
    error = read_json(env.failed / "q.error.json")
    assert error["error"]["code"] == "cancelled" and error["state"] == "cancelled"
    assert (env.failed / "q.pdf").read_bytes() == (tmp_path / "q.pdf").read_bytes()
    missing = cli(env, "cancel", "20991231T000000Z-00000000", check=False)
    assert missing.returncode == 6 and "no document" in missing.stderr
    # Its message is still queued: a worker started now takes it first (the queue is FIFO),
    # then the document dropped after it; that one's result proves the first was taken.
    counters = env.tmp / "counters"
    use_sleeping(env, counter_dir=counters)
    env.start("worker", "--pool", "threads")
    env.drop(make_text_pdf(tmp_path / "later.pdf", ["after the cancel"]))
    later = env.wait_result("later", timeout=60)
    wait_for(lambda: broker_idle(env), 30, what="every message taken and ended")
    assert read_json(env.failed / "q.error.json") == error  # still cancelled, untouched
    assert read_json(env.failed / "q.progress.json")["state"] == "cancelled"
    assert (env.failed / "q.pdf").read_bytes() == (tmp_path / "q.pdf").read_bytes()
    assert sorted(p.name for p in env.outbox.iterdir()) == [
        "later.json", "later.progress.json", "later.txt"]  # no result of q
    assert not any(env.processing.iterdir())
    # One engine call in all, the later document's: the engine never saw q. (The test
    # engine counts calls per document id and first page.)
    calls = {p.name: p.read_text() for p in counters.iterdir() if not p.name.startswith("times-")}
    assert calls == {f"{later['doc_id']}-1": "1"}


def texts(name: str, count: int) -> list[str]:
    """Page texts of a document of its own (same-content files would be duplicates)."""
    return [f"{name}\n{page_text(n)}" for n in range(1, count + 1)]


def test_retry_sends_failed_documents_back_by_path_sidecar_or_all_and_they_complete(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch=CHUNKED)
    use_sleeping(env, failing_pages=[5])
    worker = env.start("worker", "--pool", "threads")
    env.start("watch")
    env.drop(pages_pdf(tmp_path / "again.pdf", 20))
    env.drop(make_text_pdf(tmp_path / "small.pdf", ["small one"]), name="other.pdf")
    many = ["sidecar", "all1", "all2", "all3"]
    for name in many:
        env.drop(make_text_pdf(tmp_path / f"{name}.pdf", texts(name, 6)))
    env.wait_result("other")
    for name in ["again", *many]:
        assert env.wait_error(name, timeout=60)["error"]["code"] == "page_failed"
    worker.stop()
    use_sleeping(env)  # the engine fixed
    env.start("worker", "--pool", "threads")
    done = cli(env, "retry", str(env.failed / "again.pdf"))  # the original's path
    assert done.stdout.strip() == str(env.inbox / "again.pdf")
    assert not (env.failed / "again.error.json").exists()
    done = cli(env, "retry", str(env.failed / "sidecar.error.json"))  # its error sidecar
    assert done.stdout.strip() == str(env.inbox / "sidecar.pdf")
    result = env.wait_result("again", timeout=60)  # the same stem: the old sidecars are gone
    assert [p["text"] for p in result["pages"]] == [page_text(n) for n in range(1, 21)]
    result = env.wait_result("sidecar", timeout=60)
    assert [p["text"] for p in result["pages"]] == texts("sidecar", 6)
    rest = ["all1", "all2", "all3"]
    assert sorted(p.name for p in env.failed.glob("*.error.json")) == [
        f"{n}.error.json" for n in rest]
    done = cli(env, "retry", "--all")  # every failed document at once
    assert sorted(done.stdout.split()) == [str(env.inbox / f"{n}.pdf") for n in rest]
    for name in rest:
        result = env.wait_result(name, timeout=60)
        assert [p["text"] for p in result["pages"]] == texts(name, 6)
        assert read_json(env.outbox / f"{name}.progress.json")["state"] == "completed"
    assert not any(env.failed.iterdir())
    assert sorted(p.name for p in env.archive.iterdir()) == sorted(
        f"{n}.pdf" for n in ["again", "other", *many])
    assert cli(env, "retry", "--all").stdout == ""  # nothing left to send back


def test_failed_original_moved_back_by_hand_gets_a_suffixed_stem_and_overwrites_nothing(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env()
    use_sleeping(env, failing_pages=[2])
    worker = env.start("worker", "--pool", "threads")
    env.start("watch")
    env.drop(make_text_pdf(tmp_path / "hand.pdf", texts("hand", 3)))
    first = env.wait_error("hand", timeout=60)
    kept = {p.name: p.read_bytes() for p in env.failed.iterdir() if p.name != "hand.pdf"}
    assert sorted(kept) == ["hand.error.json", "hand.progress.json"]
    worker.stop()
    use_sleeping(env)  # the engine fixed
    env.start("worker", "--pool", "threads")
    os.rename(env.failed / "hand.pdf", env.inbox / "hand.pdf")  # by hand, sidecars left
    [result_file] = wait_for(lambda: list(env.outbox.glob("hand-*.json")) and [
        p for p in env.outbox.glob("hand-*.json") if not p.name.endswith(".progress.json")],
        60, what="the result under a suffixed stem")
    result = read_json(result_file)
    stem = result_file.name[: -len(".json")]
    assert stem == f"hand-{result['doc_id'][-8:]}" and result["doc_id"] != first["doc_id"]
    assert [p["text"] for p in result["pages"]] == texts("hand", 3)
    assert (env.outbox / f"{stem}.txt").read_text().split("\f") == texts("hand", 3)
    assert sorted(p.name for p in env.outbox.iterdir()) == sorted(
        f"{stem}{ext}" for ext in (".json", ".txt", ".progress.json"))  # no plain hand.*
    assert {p.name: p.read_bytes() for p in env.failed.iterdir()} == kept  # untouched
    assert [p.name for p in env.archive.iterdir()] == ["hand.pdf"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs: a filesystem that really fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"this test mounts a tmpfs (run as root): {done.stderr}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler.bin"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def waits(proc_output: str) -> list[dict[str, Any]]:
    """The worker's "waiting" log events (one per wait: a retry not counted as one)."""
    return [e for e in (json.loads(line) for line in proc_output.splitlines()
                        if line.startswith("{")) if e.get("event") == "waiting"]


def test_full_disk_makes_the_document_wait_with_its_original_then_finish(
        make_env: Callable[..., Env], tmp_path: Path, small_disk: Path) -> None:
    env = make_env()
    # One retry allowed: were the waits counted as retries, the document would give up after
    # the first or second; it must wait for as long as the disk stays full.
    max_retries = 1
    env.write_config(watch={"root": str(small_disk / "watch")},
                     workers={"max_retries": max_retries, "retry_backoff": 0.1,
                              "retry_backoff_max": 0.5})
    root = small_disk / "watch"
    listener = env.listener()
    env.start("watch", notify=listener)
    listener.wait("READY=1")
    source = make_text_pdf(tmp_path / "full.pdf", [page_text(n) for n in range(1, 4)])
    (root / "inbox" / "full.pdf").write_bytes(source.read_bytes())
    wait_for(lambda: any(d.joinpath("dispatch.json").exists()
                         for d in (root / "processing").iterdir()), 20, what="queued")
    filler = fill(small_disk)
    worker = env.start("worker", "--concurrency", "1")
    held = 6  # more waits than max_retries, and than Celery's default cap of 3 retries
    wait_for(lambda: len(waits(worker.output())) >= held, 90,
             what=f"{held} waits on the full disk")
    assert {e["code"] for e in waits(worker.output())} == {"storage_error"}
    [record] = list((root / "processing").iterdir())
    assert (record / "source").read_bytes() == source.read_bytes()  # the original is kept
    assert not (root / "outbox" / "full.json").exists()
    assert not any((root / "failed").iterdir())  # waiting, not failed after max_retries
    store = StateStore(client(env.redis_url), env.prefix, 3600, SystemClock())
    live = store.get(record.name)
    assert live is not None and live.state != "failed"
    waiting = live.fields["waiting"]  # `status` shows why it waits
    assert "storage_error" in waiting and "No space left" in waiting
    filler.unlink()
    result = read_json_when(root / "outbox" / "full.json", 60)
    assert [p["text"] for p in result["pages"]] == [page_text(n) for n in range(1, 4)]
    assert read_json(root / "outbox" / "full.progress.json")["waiting"] is None
    assert read_json(root / "outbox" / "full.progress.json")["state"] == "completed"
    assert not any((root / "failed").iterdir())


def read_json_when(path: Path, timeout: float) -> dict[str, object]:
    wait_for(path.exists, timeout, what=str(path))
    return dict(read_json(path))


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_power_cut_of_the_whole_daemon_then_every_document_finishes_exactly_once(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(redis={"url": "embedded"},
                   watch={"engine": "tesseract"}, engines={"tesseract": {"dpi": 150}})
    scans = []
    for n in range(8):
        pages = [drawn_page(page_text(n * 3 + k), dpi=150) for k in range(3)]
        scans.append(image_pdf(tmp_path / f"scan{n}.pdf", pages, dpi=150))
    proc = env.run_daemon()
    for scan in scans:
        env.drop(scan)

    def finished() -> list[Path]:
        return [p for p in env.outbox.glob("scan*.json") if not p.name.endswith(".progress.json")]

    wait_for(lambda: len(finished()) >= 3, 180, what="some results")  # not progress files
    redis_pid = int((env.tmp / "state" / "redis" / "redis.pid").read_text())
    os.killpg(proc.pid, signal.SIGKILL)  # watcher and workers ...
    _kill(redis_pid)  # ... and the embedded Redis, at the same instant
    assert len(finished()) < 8  # the cut came with documents in flight
    proc.popen.wait()
    wait_for(lambda: not Path(f"/proc/{redis_pid}").exists(), 10, what="redis to die")
    env.run_daemon()
    wait_for(lambda: len(finished()) == 8, 180, what="8 results")
    expected = sorted(f"scan{n}{ext}" for n in range(8)
                      for ext in (".json", ".txt", ".progress.json"))
    assert sorted(p.name for p in env.outbox.iterdir() if not p.name.startswith(".")) == expected
    # A result written just before the cut, its record not yet removed: the dead worker's
    # message is handed back by the reaper (every 30 s, once no live worker answers for it;
    # a round with no answer waits for the next), runs, and removes the record. Only once
    # every record is gone has every late run happened: the checks below come after it.
    wait_for(lambda: not any(env.processing.iterdir()), 100, what="processing/ emptied")
    # Exactly once: no duplicate or suffixed stem, in outbox/ or archive/; nothing failed.
    assert sorted(p.name for p in env.outbox.iterdir()) == expected
    assert sorted(p.name for p in env.archive.iterdir()) == [f"scan{n}.pdf" for n in range(8)]
    assert not any(env.failed.iterdir())
    for n in range(8):
        result = read_json(env.outbox / f"scan{n}.json")
        assert read_json(env.outbox / f"scan{n}.progress.json")["state"] == "completed"
        assert result["doc_id"] == read_json(env.outbox / f"scan{n}.progress.json")["doc_id"]
        text = (env.outbox / f"scan{n}.txt").read_text()
        assert f"Page {n * 3 + 1} of the test document" in text


def test_housekeeping_removes_stale_temp_files_and_lost_active_entries(
        make_env: Callable[..., Env]) -> None:
    env = make_env()
    watch = config_mod.load(env.config_path, environ={}).watches[0]
    paths = WatchPaths.of(watch)
    paths.ensure()
    old, fresh = paths.outbox / ".ocrd-0123456789abcdef.tmp", paths.failed / ".ocrd-fresh.tmp"
    old.write_text("left by a crash")
    fresh.write_text("being written")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    store = StateStore(client(env.redis_url), env.prefix, 3600, SystemClock())
    store.set_doc("20260101T000000Z-0000dead", state="processing", watch=watch.name)
    assert housekeeping.tidy(paths, store) == 2
    assert not old.exists() and fresh.exists()
    assert store.active() == []
