"""A file is taken only when it is whole by its content: a writer that pauses between bursts
never has its file taken half-written; a file cut off for good fails as truncated_document."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from ocr_daemon.formats.complete import whole
from ocr_daemon.formats.sniff import JPEG, PDF, PNG, TIFF, sniff
from tests.support.pdfs import make_text_pdf, page_text

from .conftest import RESOURCES, Env, read_json, wait_for


def _image(kind: str, frames: int = 1) -> bytes:
    pictures = [Image.effect_noise((200, 120), 60 + 10 * i).convert("RGB") for i in range(frames)]
    out = io.BytesIO()
    if kind == "TIFF" and frames > 1:
        pictures[0].save(out, "TIFF", save_all=True, append_images=pictures[1:])
    else:
        pictures[0].save(out, kind)
    return out.getvalue()


SAMPLES: dict[str, Callable[[Path], bytes]] = {
    "pdf": lambda tmp: make_text_pdf(tmp / "s.pdf", [page_text(n) for n in range(1, 6)],
                                     compress=False).read_bytes(),
    "scan_pdf_resource": lambda _tmp: (RESOURCES / "linn.pdf").read_bytes(),
    "png": lambda _tmp: _image("PNG"),
    "jpeg": lambda _tmp: _image("JPEG"),
    "tiff": lambda _tmp: (RESOURCES / "phototest.tif").read_bytes(),
    "tiff_three_frames": lambda _tmp: _image("TIFF", 3),
}


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_a_whole_file_is_whole_and_every_cut_of_it_is_not(sample: str, tmp_path: Path) -> None:
    data = SAMPLES[sample](tmp_path)
    path = tmp_path / "file"
    path.write_bytes(data)
    mime = sniff(path)
    assert mime in (PDF, PNG, JPEG, TIFF)
    assert whole(path, mime)
    for fraction in (0.1, 0.5, 0.9, 0.999):
        path.write_bytes(data[:max(16, int(len(data) * fraction))])
        assert not whole(path, mime), f"{sample} cut at {fraction} judged whole"


def _pausing_writer(target: Path, data: bytes, pause: float) -> threading.Thread:
    """Write the first 40 %, close, pause, reopen to append the rest: how some scan-to-folder
    devices and sync tools write, and how any writer looks from another NFS client."""
    cut = int(len(data) * 0.4)

    def write() -> None:
        with open(target, "wb") as fh:
            fh.write(data[:cut])
        time.sleep(pause)
        with open(target, "ab") as fh:
            fh.write(data[cut:])

    thread = threading.Thread(target=write)
    thread.start()
    return thread


@pytest.mark.parametrize(("polling", "pause"), [(False, 1.5), (False, 5.0), (True, 1.5),
                                                (True, 5.0)])
def test_a_writer_that_pauses_between_bursts_never_has_its_file_taken_half_written(
        make_env: Callable[..., Env], tmp_path: Path, polling: bool, pause: float) -> None:
    watch = {"incomplete_grace_seconds": 60}
    if polling:
        watch.update({"polling": True, "poll_interval": 0.2, "settle_checks": 2})
    env = make_env(watch=watch)
    env.run_daemon()
    pages = [page_text(n) for n in range(1, 13)]
    data = make_text_pdf(tmp_path / "scan.pdf", pages, compress=False).read_bytes()
    env.inbox.mkdir(parents=True, exist_ok=True)
    writer = _pausing_writer(env.inbox / "scan.pdf", data, pause)
    # The control: settle_seconds (0.3 s) passes long before the pause ends, so without the
    # content check the first burst would be claimed here.
    time.sleep(pause * 0.8)
    assert (env.inbox / "scan.pdf").exists(), "the first burst was taken"
    writer.join()
    result = env.wait_result("scan", timeout=60)
    assert [p["text"] for p in result["pages"]] == pages
    assert result["source"]["size"] == len(data)
    time.sleep(1.0)  # a fragment written after a wrong claim would show up by now
    assert list(env.failed.iterdir()) == []
    assert sorted(p.name for p in env.outbox.iterdir()) == [
        "scan.json", "scan.progress.json", "scan.txt"]
    assert list(env.inbox.iterdir()) == []


def test_a_file_cut_off_for_good_is_taken_after_the_grace_and_fails_as_truncated(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch={"incomplete_grace_seconds": 3})
    env.run_daemon()
    data = make_text_pdf(tmp_path / "w.pdf", [page_text(n) for n in range(1, 9)],
                         compress=False).read_bytes()
    cut = data[:len(data) * 2 // 3]
    env.inbox.mkdir(parents=True, exist_ok=True)
    (env.inbox / "cut.pdf").write_bytes(cut)
    dropped = time.monotonic()
    error = env.wait_error("cut", timeout=60)
    assert time.monotonic() - dropped >= 3.0  # not taken before the grace
    assert error["error"]["code"] == "truncated_document"
    assert error["error"]["retryable"] is False
    assert "incomplete_grace_seconds" in error["error"]["hint"]
    assert (env.failed / "cut.pdf").read_bytes() == cut  # the original, untouched
    wait_for(lambda: not any(env.processing.iterdir()), 10, what="processing/ empty")
    assert read_json(env.failed / "cut.progress.json")["state"] == "failed"
