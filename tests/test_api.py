"""The HTTP API against a real uvicorn (started by `ocr-daemon run` with api.enabled), real
Redis and real workers: uploads end in the right text; status, events, aliases, cancel and
reprocess."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocr_daemon.service.procs import free_port
from tests.support.pdfs import drawn_page, make_text_pdf, page_text

from .api_support import (
    MAX_UPLOAD,
    left_in,
    padded_pdf,
    serve_api,
    upload,
    wait_api,
    wait_ended,
)
from .conftest import Env, read_json


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,
           redis_server: Any) -> Iterator[tuple[Env, httpx.Client]]:
    yield from serve_api(tmp_path_factory, redis_server, "api:")


def test_uploaded_pdf_ends_as_a_document_with_its_text(served: tuple[Env, httpx.Client],
                                                       tmp_path: Path) -> None:
    env, client = served
    pages = [page_text(n) for n in (1, 2, 3)]
    res = upload(client, make_text_pdf(tmp_path / "letter.pdf", pages))
    assert res.status_code == 202, res.text
    body = res.json()
    assert body["status"] == "queued" and body["name"] == "letter.pdf"
    assert body["links"]["text"] == f"/v1/documents/{body['id']}/text"
    doc = wait_ended(client, body["id"])
    assert (doc["state"], doc["progress_percentage"], doc["task"]["state"]) == (
        "completed", 100, "SUCCESS")
    assert doc["chunks"]["total"] == doc["chunks"]["completed"] == 1
    assert doc["source"]["pages"] == 3 and doc["engine"] == "auto"
    assert doc["page_engines"] == ["pdftext"]  # auto took the text layer
    text = client.get(body["links"]["text"])
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text.split("\f") == pages
    result = client.get(body["links"]["result"]).json()
    assert result["doc_id"] == body["id"] and [p["text"] for p in result["pages"]] == pages
    # the same files as a document dropped into the inbox
    assert (env.outbox / "letter.txt").read_text(encoding="utf-8") == text.text
    assert read_json(env.outbox / "letter.json")["source"]["original_name"] == "letter.pdf"
    assert not [n for n in left_in(env.inbox) if n.startswith(".ocrd-")]


def test_uploaded_image_is_read_by_ocr_and_its_events_run_to_the_end(
        served: tuple[Env, httpx.Client], tmp_path: Path) -> None:
    _, client = served
    image = tmp_path / "scan.png"
    drawn_page("Invoice number 4711\nTotal amount due seventy dollars").save(image, dpi=(150, 150))
    body = upload(client, image).json()
    events: list[dict[str, Any]] = []
    with client.stream("GET", f"/v1/documents/{body['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    states = [e["state"] for e in events]
    order = ["queued", "processing", "completed"]
    assert states == sorted(states, key=order.index), states  # never backwards
    assert states[-1] == "completed" and events[-1]["ended"] and "processing" in states
    assert [e["ended"] for e in events].count(True) == 1  # the stream closes after the end
    percentages = [e["progress_percentage"] for e in events]
    assert percentages == sorted(percentages) and percentages[-1] == 100
    text = client.get(f"/v1/documents/{body['id']}/text").text
    assert "Invoice" in text and "4711" in text
    result = client.get(f"/v1/documents/{body['id']}/result").json()
    assert result["pages"][0]["engine"] == "tesseract"
    assert events[-1]["page_engines"] == ["tesseract"]


def test_concurrent_uploads_all_end_exactly_once(served: tuple[Env, httpx.Client],
                                                 tmp_path: Path) -> None:
    env, client = served
    files = []
    for i in range(20):
        path = tmp_path / f"many-{i:02d}.pdf"
        if i % 5 == 0:  # four of them 5 MB
            padded_pdf(path, [page_text(i)], 5 * 1024 * 1024)
        else:
            make_text_pdf(path, [page_text(i)])
        files.append(path)
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda p: upload(client, p), files))
    assert [a.status_code for a in answers] == [202] * 20, [a.text for a in answers]
    ids = [a.json()["id"] for a in answers]
    assert len(set(ids)) == 20
    for i, doc_id in enumerate(ids):
        doc = wait_ended(client, doc_id, timeout=180)
        assert doc["state"] == "completed", doc
        assert client.get(f"/v1/documents/{doc_id}/text").text == page_text(i)
    results = [read_json(p) for p in env.outbox.glob("many-*.json")
               if not p.name.endswith(".progress.json")]
    assert sorted(r["doc_id"] for r in results) == sorted(ids)  # each once, no duplicate
    assert not [n for n in left_in(env.inbox) if n.startswith("many")]


def test_idempotency_key_gives_the_same_document(served: tuple[Env, httpx.Client],
                                                 tmp_path: Path) -> None:
    env, client = served
    source = make_text_pdf(tmp_path / "once.pdf", [page_text(4)])
    key = {"Idempotency-Key": f"k-{time.time()}"}
    first = upload(client, source, headers=key)
    second = upload(client, source, headers=key)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"]
    wait_ended(client, first.json()["id"])
    third = upload(client, source, headers=key)  # after the end too
    assert third.json()["id"] == first.json()["id"]
    assert sorted(p.name for p in env.outbox.glob("once*.json")) == [
        "once.json", "once.progress.json"]


def test_aliases_answer_in_the_original_backends_shapes(served: tuple[Env, httpx.Client],
                                                        tmp_path: Path) -> None:
    _, client = served
    source = make_text_pdf(tmp_path / "alias.pdf", [page_text(5), page_text(6)])
    with open(source, "rb") as fh:
        res = client.post("/api/documents/upload", files={"file": ("alias.pdf", fh)})
    assert res.status_code == 200, res.text
    up = res.json()
    assert set(up) == {"document_id", "filename", "status", "task_id", "message"}
    assert (up["filename"], up["status"]) == ("alias.pdf", "queued") and up["task_id"]
    wait_ended(client, up["document_id"])
    status = client.get(f"/api/documents/{up['document_id']}/status").json()
    assert set(status) == {"document_id", "status", "progress_percentage", "task",
                           "error_message", "updated_at"}
    assert set(status["task"]) == {"task_id", "state", "info"}
    assert (status["status"], status["progress_percentage"], status["task"]["task_id"]) == (
        "completed", 100, up["task_id"])
    progress = client.get(f"/api/documents/{up['document_id']}/progress").json()
    assert set(progress) == {"document_id", "status", "progress_percentage",
                             "real_time_progress", "chunk_details"}
    assert progress["real_time_progress"] == {
        "total_chunks": 1, "completed_chunks": 1, "failed_chunks": 0, "processing_chunks": 0,
        "overall_progress": 100}
    assert progress["chunk_details"] == {"1": {"status": "completed", "error": None}}
    again = client.post(f"/api/documents/{up['document_id']}/reprocess").json()
    assert again["status"] == "queued" and again["document_id"] != up["document_id"]
    assert wait_ended(client, again["document_id"])["state"] == "completed"
    assert client.get(f"/v1/documents/{again['document_id']}/text").text == "\f".join(
        [page_text(5), page_text(6)])


def test_failed_document_shows_its_error_and_reprocesses_with_another_engine(
        served: tuple[Env, httpx.Client], tmp_path: Path) -> None:
    env, client = served
    broken = tmp_path / "broken.pdf"
    # whole (it ends as a PDF must), but its cross-reference is wrong: corrupt, not truncated
    broken.write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n"
                       b"<< /Root 1 0 R >>\nstartxref\n9\n%%EOF\n")
    first = upload(client, broken).json()
    doc = wait_ended(client, first["id"])
    assert doc["state"] == "failed" and doc["error"]["code"] == "corrupt_document"
    assert doc["error"]["hint"] and doc["task"]["state"] == "FAILURE"
    res = client.get(f"/v1/documents/{first['id']}/text")
    assert res.status_code == 409 and res.json()["code"] == "conflict"
    # a failed document runs again from its original in failed/ (as `ocr-daemon retry`)
    res = client.post(f"/v1/documents/{first['id']}/reprocess")
    assert res.status_code == 202
    again = wait_ended(client, res.json()["id"])
    assert again["state"] == "failed" and again["name"] == "broken.pdf"
    assert sorted(p.name for p in env.failed.glob("broken*")) == [
        "broken.error.json", "broken.pdf", "broken.progress.json"]
    # a completed document runs again from its archived original, here with tesseract
    good = upload(client, make_text_pdf(tmp_path / "twice.pdf", ["Twice upon a time"])).json()
    assert wait_ended(client, good["id"])["engine"] == "auto"
    res = client.post(f"/v1/documents/{good['id']}/reprocess", json={"engine": "tesseract"})
    assert res.status_code == 202, res.text
    redone = wait_ended(client, res.json()["id"], timeout=120)
    assert redone["state"] == "completed" and redone["engine"] == "tesseract"
    result = client.get(f"/v1/documents/{redone['id']}/result").json()
    assert [p["engine"] for p in result["pages"]] == ["tesseract"]
    assert "Twice" in result["pages"][0]["text"]
    running = client.post(f"/v1/documents/{good['id']}/cancel")
    assert running.status_code == 409


def test_cancel_ends_a_running_document(served: tuple[Env, httpx.Client],
                                        tmp_path: Path) -> None:
    env, client = served
    from tests.support.pdfs import image_pdf

    scans = image_pdf(tmp_path / "long.pdf", [drawn_page(page_text(n)) for n in range(1, 4)])
    body = upload(client, scans).json()
    res = client.post(f"/v1/documents/{body['id']}/cancel")
    assert res.status_code == 200 and res.json()["status"] == "cancelled"
    doc = wait_ended(client, body["id"])
    assert doc["state"] == "cancelled" and doc["error"]["code"] == "cancelled"
    assert (env.failed / "long.pdf").exists()  # the original kept
    assert client.post(f"/v1/documents/{body['id']}/cancel").status_code == 409


def test_listing_filters_and_pages_newest_first(served: tuple[Env, httpx.Client],
                                               tmp_path: Path) -> None:
    _, client = served
    ids = [upload(client, make_text_pdf(tmp_path / f"l{i}.pdf", [page_text(i)])).json()["id"]
           for i in range(3)]
    for doc_id in ids:
        wait_ended(client, doc_id)
    page = client.get("/v1/documents", params={"limit": 2, "state": "completed"}).json()
    assert len(page["items"]) == 2 and page["next"]
    assert [i["id"] for i in page["items"]] == sorted(
        [i["id"] for i in page["items"]], reverse=True)
    rest = client.get("/v1/documents", params={"before": page["next"], "limit": 500}).json()
    seen = [i["id"] for i in page["items"] + rest["items"]]
    assert set(ids) <= set(seen) and len(seen) == len(set(seen))
    assert all(i["state"] == "failed" for i in client.get(
        "/v1/documents", params={"state": "failed"}).json()["items"])
    assert client.get("/v1/documents", params={"state": "bogus"}).status_code == 400


def test_health_metrics_and_openapi(served: tuple[Env, httpx.Client]) -> None:
    _, client = served
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["redis"] == "ok" and health["workers"]
    assert "gemini" in health["engines"]
    metrics = client.get("/v1/metrics")
    assert metrics.status_code == 200 and "ocrd_redis_up 1.0" in metrics.text
    schema = client.get("/openapi.json").json()
    for path in ("/v1/documents", "/v1/documents/{doc_id}", "/v1/documents/{doc_id}/events",
                 "/v1/documents/{doc_id}/text", "/api/documents/upload"):
        assert path in schema["paths"], path
    assert client.get("/docs").status_code == 200
    assert "ocr-daemon" in client.get("/").text


def test_upload_claimed_while_the_broker_is_down_is_queued_by_the_watchers_sweep(
        make_env: Any, tmp_path: Path) -> None:
    """A claim the API could not queue (the send failed, or the API died right after the
    claim) is a complete record on disk: the watcher's sweep queues it and it ends."""
    import asyncio

    from ocr_daemon import runtime
    from ocr_daemon.api.uploads import Uploads, receive
    from ocr_daemon.errors import ServiceUnavailable
    from ocr_daemon.intake.dispatch import Dispatcher
    from ocr_daemon.record.layout import WatchPaths

    env: Env = make_env()
    rt = runtime.build(env.cfg)

    def broker_down(_watch: str, _doc_id: str, _task_id: str) -> None:
        raise ServiceUnavailable("broker unreachable")

    paths = WatchPaths.of(env.cfg.watches[0])
    paths.ensure()
    source = make_text_pdf(tmp_path / "later.pdf", [page_text(7)])
    body = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"later.pdf\""
            b"\r\n\r\n" + source.read_bytes() + b"\r\n--B--\r\n")

    async def stream() -> Any:
        yield body

    received = asyncio.run(receive(stream(), "multipart/form-data; boundary=B", paths.inbox,
                                   MAX_UPLOAD))
    accepted = Uploads(rt, Dispatcher(rt, broker_down)).accept(paths, received, None)
    assert not accepted.queued
    record = paths.doc(accepted.doc_id)
    assert record.manifest.exists() and record.source.exists()
    assert not record.dispatch.exists() and not list(env.inbox.iterdir())
    env.run_daemon()
    result = env.wait_result("later", timeout=90)  # sweep: after QUEUE_GRACE_SECONDS
    assert result["doc_id"] == accepted.doc_id
    assert (env.outbox / "later.txt").read_text(encoding="utf-8") == page_text(7)


def test_upload_goes_to_the_watch_it_names(make_env: Any, tmp_path: Path) -> None:
    env: Env = make_env()
    port = free_port()
    second = tmp_path / "second"
    env.write_config(watches=[{"name": "first", "root": str(env.root)},
                              {"name": "second", "root": str(second)}],
                     api={"listen": f"127.0.0.1:{port}", "watch": "first"})
    proc = env.start("api")  # no workers: the documents stay in processing/
    base = f"http://127.0.0.1:{port}"
    wait_api(base, proc)
    source = make_text_pdf(tmp_path / "w.pdf", [page_text(2)])
    with httpx.Client(base_url=base, timeout=30) as client, open(source, "rb") as fh:
        data = source.read_bytes()
        named = client.post("/v1/documents", files={"file": ("w.pdf", data)},
                            data={"watch": "second"}).json()
        default = client.post("/v1/documents", files={"file": ("w.pdf", fh)}).json()
        unknown = client.post("/v1/documents", files={"file": ("w.pdf", data)},
                              data={"watch": "third"})
        assert client.get(f"/v1/documents/{named['id']}").json()["watch"] == "second"
    assert (second / "processing" / named["id"] / "source").read_bytes() == data
    assert (env.root / "processing" / default["id"] / "source").exists()
    assert unknown.status_code == 400 and "first, second" in unknown.json()["hint"]
    assert not [p for p in (second / "inbox").iterdir()] + [p for p in env.inbox.iterdir()]
