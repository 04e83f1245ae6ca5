"""End to end: real files dropped into a real inbox, a real daemon, outputs read from disk."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from ocr_daemon.formats import pdf
from tests.support.pdfs import make_text_pdf, page_text

from .conftest import RESOURCES, Env, alive, children, descendants, read_json, wait_for


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, redis_server: object) -> Iterator[Env]:
    """One running daemon for the tests that only drop files and read results."""
    env = Env(tmp_path_factory.mktemp("e2e"), redis_server.url, "e2e:")  # type: ignore[attr-defined]
    env.run_daemon()
    yield env
    env.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_nothing_in_flight(env: Env) -> None:
    wait_for(lambda: not any(env.processing.iterdir()), 10, what="processing/ to be empty")


def test_text_pdf_comes_out_as_text_json_and_progress(shared: Env, tmp_path: Path) -> None:
    source = make_text_pdf(tmp_path / "letter.pdf", [page_text(n) for n in (1, 2, 3)])
    digest = sha256(source)
    shared.drop(source)
    result = shared.wait_result("letter")
    text = (shared.outbox / "letter.txt").read_text(encoding="utf-8")
    assert text.split("\f") == [page_text(n) for n in (1, 2, 3)]
    assert result["schema"] == "ocr-daemon/result/v1"
    assert result["source"] == {"name": "letter.pdf", "path": "letter.pdf", "sha256": digest,
                                "size": source.stat().st_size, "mime": "application/pdf",
                                "pages": 3, "decrypted": False}
    assert [(p["number"], p["engine"]) for p in result["pages"]] == [
        (1, "pdftext"), (2, "pdftext"), (3, "pdftext")]
    assert result["engine"] == "pdftext" and result["warnings"] == []
    assert result["started_at"] <= result["finished_at"]
    progress = read_json(shared.outbox / "letter.progress.json")
    assert progress["schema"] == "ocr-daemon/progress/v1"
    assert (progress["state"], progress["progress_percentage"]) == ("completed", 100)
    assert progress["doc_id"] == result["doc_id"]
    assert progress["chunks"]["total"] == 1 and progress["chunks"]["completed"] == 1
    assert sha256(shared.archive / "letter.pdf") == digest  # the original, untouched
    assert not (shared.inbox / "letter.pdf").exists()
    assert_nothing_in_flight(shared)


def test_real_pdf_text_matches_direct_extraction(shared: Env) -> None:
    source = RESOURCES / "pdflatex-4-pages.pdf"
    shared.drop(source)
    result = shared.wait_result("pdflatex-4-pages")
    expected = pdf.page_texts(source, [0, 1, 2, 3])
    assert [p["text"] for p in result["pages"]] == expected
    assert (shared.outbox / "pdflatex-4-pages.txt").read_text(encoding="utf-8") == "\f".join(
        expected)
    assert expected[0].startswith("Hello, here is some text without a meaning.")


def test_pdf_with_empty_user_password_is_read(shared: Env) -> None:
    shared.drop(RESOURCES / "r5-empty-password.pdf")
    result = shared.wait_result("r5-empty-password")
    assert result["source"]["pages"] == 1
    assert result["pages"][0]["text"].strip()


def _garbage(tmp: Path) -> Path:
    path = tmp / "invoice.pdf"
    path.write_text("This is a plain text file with a .pdf name\n")
    return path


def _empty(tmp: Path) -> Path:
    path = tmp / "empty.pdf"
    path.write_bytes(b"")
    return path


def _blank(tmp: Path) -> Path:
    return make_text_pdf(tmp / "blank-scan.pdf", ["", ""])


def _cut_in_half(tmp: Path) -> Path:
    whole = make_text_pdf(tmp / "whole.pdf", [page_text(n) for n in range(1, 9)],
                          compress=False)
    path = tmp / "cut.pdf"
    path.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    return path


def _damaged(tmp: Path) -> Path:
    """Ends as a PDF should, but its catalog names a page tree that is not there."""
    path = tmp / "damaged.pdf"
    path.write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R >>\nendobj\nxref\n"
                     b"0 2\n0000000000 65535 f \n0000000009 00000 n \ntrailer\n"
                     b"<< /Size 2 /Root 1 0 R >>\nstartxref\n62\n%%EOF\n")
    return path


def _resource(name: str) -> Callable[[Path], Path]:
    return lambda _tmp: RESOURCES / name


BAD_INPUTS = {
    "not_a_pdf": (_garbage, "unsupported_type", "not a PDF, PNG, JPEG or TIFF"),
    "zero_bytes": (_empty, "empty_file", "empty"),
    # No `startxref ... %%EOF` at the end: left in the inbox for incomplete_grace_seconds
    # (2 s in tests), then taken and failed as cut off rather than read half.
    "corrupt_no_startxref": (_resource("qpdf-bad2.pdf"), "truncated_document", "has no end"),
    "corrupt_no_trailer": (_resource("missing_xref_trailer_dict.pdf"), "truncated_document",
                           "has no end"),
    "cut_in_half": (_cut_in_half, "truncated_document", "has no end"),
    "corrupt_but_whole": (_damaged, "corrupt_document", "damaged"),
    "encrypted_aes": (_resource("r4-aes-user-password.pdf"), "encrypted_document", "password"),
    "encrypted_libreoffice": (_resource("libreoffice-writer-password.pdf"),
                              "encrypted_document", "password"),
    "image_without_text_layer": (_resource("phototest.tif"), "no_text_layer",
                                 "no text layer: use engine tesseract, gemini or auto"),
    "pdf_without_text_layer": (_blank, "no_text_layer",
                               "no text layer: use engine tesseract, gemini or auto"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_ends_in_failed_with_error_sidecar_and_original_kept(
        shared: Env, tmp_path: Path, case: str) -> None:
    make, code, message = BAD_INPUTS[case]
    source = make(tmp_path)
    name = f"{case}{source.suffix}"
    digest = sha256(source)
    shared.drop(source, name=name)
    error = shared.wait_error(case)
    assert error["error"]["code"] == code
    assert message in error["error"]["message"]
    assert error["error"]["retryable"] is False
    assert error["error"]["hint"]
    assert error["original"] == f"failed/{name}"
    assert sha256(shared.failed / name) == digest
    progress = read_json(shared.failed / f"{case}.progress.json")
    assert progress["state"] == "failed" and progress["error"]["code"] == code
    assert not (shared.outbox / f"{case}.progress.json").exists()
    assert not (shared.outbox / f"{case}.json").exists()
    assert_nothing_in_flight(shared)


def test_same_name_twice_never_overwrites_the_first_results(shared: Env, tmp_path: Path) -> None:
    first = make_text_pdf(tmp_path / "first.pdf", ["first version"])
    second = make_text_pdf(tmp_path / "second.pdf", ["second version"])
    shared.drop(first, name="dup.pdf")
    r1 = shared.wait_result("dup")
    shared.drop(second, name="dup.pdf")
    stem2 = "dup-" + wait_for(lambda: [p.name for p in shared.outbox.glob("dup-*.json")
                                       if not p.name.endswith(".progress.json")],
                              what="second result")[0][4:-5]
    r2 = read_json(shared.outbox / f"{stem2}.json")
    assert r1["pages"][0]["text"] == "first version"
    assert r2["pages"][0]["text"] == "second version"
    assert read_json(shared.outbox / "dup.json")["doc_id"] == r1["doc_id"]
    assert (shared.archive / "dup.pdf").exists() and len(list(shared.archive.glob("dup*"))) == 2


def test_files_not_matching_patterns_stay_in_the_inbox(shared: Env, tmp_path: Path) -> None:
    notes = shared.inbox / "notes.txt"
    notes.write_text("not a document")
    hidden = shared.inbox / ".~lock.scan.pdf#"
    hidden.write_text("lock")
    # The control: a document dropped after them is taken and done, so the watcher was alive
    # and past them (seen earlier, settled earlier) when they are checked.
    shared.drop(make_text_pdf(tmp_path / "control.pdf", ["control"]), name="control.pdf")
    assert shared.wait_result("control")["pages"][0]["text"] == "control"
    assert notes.exists() and hidden.exists()
    assert not list(shared.failed.glob("notes*"))


def test_file_still_being_written_is_not_taken(shared: Env, tmp_path: Path) -> None:
    source = make_text_pdf(tmp_path / "slow.pdf", [page_text(n) for n in range(1, 40)],
                           compress=False)
    data = source.read_bytes()
    target = shared.inbox / "slow.pdf"
    with open(target, "wb") as fh:  # a writer that pauses longer than settle_seconds
        for i in range(4):
            fh.write(data[i * len(data) // 4:(i + 1) * len(data) // 4])
            fh.flush()
            time.sleep(0.8)
            assert target.exists(), "taken while still open for writing"
    result = shared.wait_result("slow")
    assert result["source"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["source"]["pages"] == 39


def test_files_waiting_at_start_are_taken(make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env()
    for n in range(3):
        env.drop(make_text_pdf(tmp_path / f"early{n}.pdf", [f"early {n}"]))
    env.run_daemon()
    for n in range(3):
        assert env.wait_result(f"early{n}")["pages"][0]["text"] == f"early {n}"


@pytest.mark.slow
def test_ctrl_c_stops_everything_and_embedded_redis_keeps_its_data(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(redis={"url": "embedded"})
    proc = env.run_daemon()
    env.drop(make_text_pdf(tmp_path / "kept.pdf", ["kept"]))
    doc_key = f"{env.prefix}doc:{env.wait_result('kept')['doc_id']}"
    family = descendants(proc.pid)
    assert len(family) >= 3  # redis-server, the worker, its pool processes
    proc.signal(signal.SIGINT)
    assert proc.popen.wait(90) == 0
    wait_for(lambda: not any(alive(p) for p in family), 10, what="children to exit")
    assert (env.tmp / "state" / "redis" / "appendonlydir").is_dir()
    assert not (env.tmp / "state" / "redis.url").exists()
    assert '"event": "stopped"' in proc.output()
    # Started again, the embedded Redis has the document's record of the first run.
    env.run_daemon()
    url = (env.tmp / "state" / "redis.url").read_text().strip()
    assert redis.Redis.from_url(url, decode_responses=True).hget(doc_key, "state") == "completed"


@pytest.mark.slow
def test_dead_worker_is_replaced_and_work_continues(make_env: Callable[..., Env],
                                                    tmp_path: Path) -> None:
    env = make_env()
    proc = env.run_daemon()
    workers = [p for p in children(proc.pid)
               if b"worker" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)
    wait_for(lambda: [p for p in children(proc.pid) if p != workers[0] and alive(p)
                      and b"worker" in Path(f"/proc/{p}/cmdline").read_bytes()],
             15, what="a new worker")
    env.drop(make_text_pdf(tmp_path / "after.pdf", ["after the restart"]))
    assert env.wait_result("after", timeout=40)["pages"][0]["text"] == "after the restart"
    assert "worker_died" in proc.output()


def test_missing_redis_server_binary_says_how_to_install(make_env: Callable[..., Env]) -> None:
    env = make_env(redis={"url": "embedded"})
    proc = env.start("run", extra_env={"PATH": "/nonexistent"})
    assert proc.popen.wait(30) == 3
    assert "apt-get install redis-server" in proc.output()
