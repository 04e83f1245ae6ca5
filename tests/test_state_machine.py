"""Start, chunks, ending and reaper called step by step in this process, with a fake clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ocr_daemon.commands.cancel import cancel
from ocr_daemon.engines.base import Extraction, PageRequest
from ocr_daemon.errors import ServerError
from ocr_daemon.pipeline import chunk as chunkwork
from ocr_daemon.pipeline import finish
from ocr_daemon.pipeline.start import start_document
from ocr_daemon.record.disk import DispatchNote, Outcome
from ocr_daemon.record.state import COMPLETED, PROCESSING
from tests.conftest import Env
from tests.support.inprocess import Machine, PageEngine, WorkerKilled

# Five pages in chunks of two: three chunks (pages 1-2, 3-4, 5).
PAGES = 5
WATCH = {"chunk_pages": 2, "chunk_threshold_pages": 2}


@pytest.fixture
def machine(make_env: Callable[..., Env]) -> Machine:
    return Machine(make_env(watch=WATCH).cfg)


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def expected_text() -> str:
    return "\f".join(f"text of page {n}" for n in range(1, PAGES + 1))


def assert_completed_once(m: Machine, stem: str = "scan") -> None:
    """One set of outputs, the original archived once, no record left in processing/."""
    assert m.files("outbox") == [f"{stem}.json", f"{stem}.progress.json", f"{stem}.txt"]
    assert m.files("archive") == [f"{stem}.pdf"]
    assert m.files("failed") == [] and m.files("processing") == []
    assert (m.paths.outbox / f"{stem}.txt").read_text() == expected_text()
    result = read(m.paths.outbox / f"{stem}.json")
    assert [p["number"] for p in result["pages"]] == list(range(1, PAGES + 1))
    assert read(m.paths.outbox / f"{stem}.progress.json")["state"] == COMPLETED


def test_a_chunked_document_runs_start_to_end_in_process(machine: Machine) -> None:
    doc_id = machine.submit("scan.pdf", PAGES)
    assert [s[1] for s in machine.sent] == [doc_id]
    assert machine.deliver(doc_id, machine.sent[0][2]) == COMPLETED
    assert_completed_once(machine)
    assert machine.engine.calls == {n: 1 for n in range(1, PAGES + 1)}


def test_a_document_delivered_twice_yields_the_same_files_once(machine: Machine) -> None:
    doc_id = machine.submit("scan.pdf", PAGES)
    doc = machine.doc(doc_id)
    assert doc is not None
    first = start_document(machine.rt, doc, "t1")
    again = start_document(machine.rt, doc, "t1")  # redelivered before any chunk ran
    assert first == again and first is not None
    assert [c.pages for c in first.chunks] == [[1, 2], [3, 4], [5]]
    assert not doc.dp.chunks.exists()  # page ranges of the original: nothing was split
    assert machine.deliver(doc_id) == COMPLETED
    assert machine.deliver(doc_id) == "gone"  # redelivered after the ending: nothing to do
    assert_completed_once(machine)
    assert machine.engine.calls == {n: 1 for n in range(1, PAGES + 1)}


def test_a_chunk_delivered_twice_is_extracted_once(machine: Machine) -> None:
    doc_id = machine.submit("scan.pdf", PAGES)
    doc = machine.doc(doc_id)
    assert doc is not None
    plan = start_document(machine.rt, doc, "t1")
    assert plan is not None
    for index in (0, 1, 1, 2, 0):  # chunks 0 and 1 delivered twice
        assert chunkwork.run_chunk(machine.rt, doc, plan, index,
                                   may_retry=False).state == COMPLETED
    assert machine.engine.calls == {n: 1 for n in range(1, PAGES + 1)}
    assert finish.aggregate(machine.rt, doc, plan) == COMPLETED
    assert finish.aggregate(machine.rt, doc, plan) == "gone"  # the chord fired twice
    assert_completed_once(machine)


def test_a_lost_chunk_is_requeued_from_disk_and_only_it_is_redone(machine: Machine) -> None:
    doc_id = machine.submit("scan.pdf", PAGES)
    doc = machine.doc(doc_id)
    assert doc is not None
    plan = start_document(machine.rt, doc, machine.sent[0][2])
    assert plan is not None
    chunkwork.run_chunk(machine.rt, doc, plan, 0, may_retry=False)
    machine.forget_redis()  # Redis restarted empty: the messages of chunks 1 and 2 are gone
    machine.clock.advance(machine.rt.cfg.stall_timeout - 1)
    assert machine.reap() == 0  # not stalled yet
    machine.clock.advance(2)
    assert machine.reap() == 1
    assert len(machine.sent) == 2 and machine.sent[1][1] == doc_id
    note = DispatchNote.load(doc.dp.dispatch)
    assert note is not None and (note.task_id, note.attempts) == (machine.sent[1][2], 2)
    live = machine.rt.store.get(doc_id)  # rebuilt from disk: chunk 0 is done
    assert live is not None and live.chunk(0).state == COMPLETED
    assert machine.deliver(doc_id, machine.sent[1][2]) == COMPLETED
    assert_completed_once(machine)
    assert machine.engine.calls == {n: 1 for n in range(1, PAGES + 1)}


def test_a_stalled_chunk_is_requeued_then_failed_as_stalled_after_the_cap(
        machine: Machine) -> None:
    doc_id = machine.submit("scan.pdf", PAGES)
    machine.engine.killing = {3}  # the worker dies on chunk 1 every time
    cap = machine.rt.cfg.max_document_attempts
    for attempt in range(1, cap + 1):
        with pytest.raises(WorkerKilled):
            machine.deliver(doc_id, machine.sent[-1][2])
        live = machine.rt.store.get(doc_id)
        assert live is not None and live.chunk(1).state == PROCESSING
        assert machine.reap() == 0  # still within stall_timeout
        machine.clock.advance(machine.rt.cfg.stall_timeout + 1)
        assert machine.reap() == 1
        assert len(machine.sent) == min(attempt + 1, cap)
    error = read(machine.paths.failed / "scan.error.json")
    assert error["error"]["code"] == "stalled" and error["state"] == "failed"
    assert machine.files("failed") == ["scan.error.json", "scan.partial.txt", "scan.pdf",
                                       "scan.progress.json"]
    assert machine.files("processing") == [] and machine.files("outbox") == []
    assert machine.engine.calls == {1: 1, 2: 1}  # chunk 0 once, never redone
    assert machine.deliver(doc_id) == "gone"


def test_a_cancel_between_chunks_stops_the_rest(machine: Machine) -> None:
    doc_id = machine.submit("scan.pdf", PAGES)
    doc = machine.doc(doc_id)
    assert doc is not None
    plan = start_document(machine.rt, doc, "t1")
    assert plan is not None
    chunkwork.run_chunk(machine.rt, doc, plan, 0, may_retry=False)
    _, state = cancel(machine.rt, doc_id)
    assert state == "cancelled"
    assert machine.doc(doc_id) is None  # a chunk task delivered now finds nothing to do
    assert machine.deliver(doc_id) == "gone"
    assert machine.engine.calls == {1: 1, 2: 1}
    error = read(machine.paths.failed / "scan.error.json")
    assert (error["state"], error["error"]["code"]) == ("cancelled", "cancelled")
    assert read(machine.paths.failed / "scan.progress.json")["state"] == "cancelled"
    assert "scan.pdf" in machine.files("failed") and machine.files("outbox") == []
    assert machine.files("processing") == []


def test_a_crash_between_deciding_and_writing_the_ending_is_resumed_once(
        machine: Machine) -> None:
    doc_id = machine.submit("scan.pdf", PAGES)
    doc = machine.doc(doc_id)
    assert doc is not None
    plan = start_document(machine.rt, doc, "t1")
    assert plan is not None
    for index in range(len(plan.chunks)):
        chunkwork.run_chunk(machine.rt, doc, plan, index, may_retry=False)
    with finish.document_lock(machine.rt, doc):  # what aggregate does before carrying out
        decided = finish.decide(machine.rt, doc, COMPLETED)
    assert Outcome.load(doc.dp.outcome) == decided
    assert machine.files("outbox") == ["scan.progress.json"]  # the crash: nothing written
    machine.clock.advance(1)
    # The document task delivered again finds the decision and carries it out.
    assert start_document(machine.rt, doc, "t2") is None
    assert_completed_once(machine)
    assert read(machine.paths.outbox / "scan.json")["finished_at"] > decided.decided_at
    assert finish.resume(machine.rt, doc, plan) == "gone"
    assert finish.aggregate(machine.rt, doc, plan) == "gone"
    assert_completed_once(machine)


def test_a_crash_after_the_original_moved_ends_with_the_same_files(machine: Machine) -> None:
    doc_id = machine.submit("scan.pdf", PAGES)
    machine.engine.failing = {5}
    doc = machine.doc(doc_id)
    assert doc is not None
    plan = start_document(machine.rt, doc, "t1")
    assert plan is not None
    for index in range(len(plan.chunks)):
        chunkwork.run_chunk(machine.rt, doc, plan, index, may_retry=False)
    error = {"code": "page_failed", "message": "page 5 cannot be read", "retryable": False}
    chunk_errors = [{"index": 2, "pages": [5, 5], "error": error}]
    with finish.document_lock(machine.rt, doc):
        decided = finish.decide(machine.rt, doc, "failed", error=error,
                                chunk_errors=chunk_errors)
        finish._move_original(doc, decided)  # killed right after this step
    assert machine.files("failed") == ["scan.pdf"]
    assert machine.doc(doc_id) is not None  # the record stays until the ending is written
    assert finish.resume(machine.rt, doc, doc.plan()) == "failed"
    assert machine.files("failed") == ["scan.error.json", "scan.partial.txt", "scan.pdf",
                                       "scan.progress.json"]
    sidecar = read(machine.paths.failed / "scan.error.json")
    assert (sidecar["error"], sidecar["chunk_errors"]) == (error, chunk_errors)
    assert sidecar["original"] == "failed/scan.pdf"
    assert machine.files("processing") == [] and machine.files("outbox") == []


def test_a_duplicate_is_skipped_with_its_ending_recorded_and_carried_out(
        make_env: Callable[..., Env]) -> None:
    m = Machine(make_env(watch={**WATCH, "duplicates": "skip"}).cfg)
    first = m.submit("scan.pdf", PAGES)
    assert m.deliver(first) == COMPLETED
    second = m.submit("copy.pdf", PAGES)  # the same bytes under another name
    assert [s[1] for s in m.sent] == [first]  # never queued: ended at once
    result = read(m.paths.outbox / "copy.json")
    assert result["duplicate_of"]["doc_id"] == first and result["pages"] == []
    assert m.files("archive") == ["copy.pdf", "scan.pdf"]
    assert m.files("processing") == [] and m.deliver(second) == "gone"
    assert m.engine.calls == {n: 1 for n in range(1, PAGES + 1)}


def one_pass_keys(m: Machine, doc_id: str) -> int:
    store = m.rt.store
    return int(store.r.exists(store.chunks_key(doc_id), store.done_key(doc_id),
                              store.retried_key(doc_id)))


def test_a_one_pass_document_shows_its_chunk_by_its_own_state_without_chunk_keys(
        make_env: Callable[..., Env]) -> None:
    m = Machine(make_env().cfg)  # 5 pages, below chunk_threshold_pages: one pass
    doc_id = m.submit("scan.pdf", PAGES)
    doc = m.doc(doc_id)
    assert doc is not None
    plan = start_document(m.rt, doc, "t1")
    assert plan is not None and not plan.chunked
    live = m.rt.store.get(doc_id)
    assert live is not None and live.one_pass
    assert [(c.state, c.attempts) for c in live.chunks] == [(PROCESSING, 1)]
    chunkwork.run_chunk(m.rt, doc, plan, 0, may_retry=False, first_try=True)
    assert finish.aggregate(m.rt, doc, plan) == COMPLETED
    assert_completed_once(m)
    assert one_pass_keys(m, doc_id) == 0  # its chunk was never written on its own
    live = m.rt.store.get(doc_id)
    assert live is not None and [(c.state, c.attempts) for c in live.chunks] == [(COMPLETED, 1)]
    assert read(m.paths.outbox / "scan.json")["chunks"][0]["attempts"] == 1
    progress = read(m.paths.outbox / "scan.progress.json")
    assert progress["chunks"]["completed"] == 1 and progress["progress_percentage"] == 100


@dataclass
class FlakyEngine(PageEngine):
    """Fails its first ``errors`` calls as a server would (retryable), then answers."""

    errors: int = 1

    def extract(self, request: PageRequest) -> Extraction:
        if self.errors:
            self.errors -= 1
            raise ServerError("503 from the engine")
        return super().extract(request)


def test_a_one_pass_chunk_retried_once_keeps_its_attempts(
        make_env: Callable[..., Env]) -> None:
    m = Machine(make_env().cfg)
    m.engine = FlakyEngine()
    doc_id = m.submit("scan.pdf", PAGES)
    doc = m.doc(doc_id)
    assert doc is not None
    plan = start_document(m.rt, doc, "t1")
    assert plan is not None
    with pytest.raises(ServerError):  # retryable: back to Celery
        chunkwork.run_chunk(m.rt, doc, plan, 0, may_retry=True, first_try=True)
    live = m.rt.store.get(doc_id)
    assert live is not None and live.chunk(0).attempts == 1 and live.chunk(0).error
    chunkwork.run_chunk(m.rt, doc, plan, 0, may_retry=True)  # Celery's retry
    assert finish.aggregate(m.rt, doc, plan) == COMPLETED
    live = m.rt.store.get(doc_id)
    assert live is not None and [(c.state, c.attempts) for c in live.chunks] == [(COMPLETED, 2)]
    assert read(m.paths.outbox / "scan.json")["chunks"][0]["attempts"] == 2


def test_a_one_pass_ending_carries_its_result_and_a_torn_result_is_extracted_again(
        make_env: Callable[..., Env]) -> None:
    m = Machine(make_env().cfg)
    doc_id = m.submit("scan.pdf", PAGES)
    doc = m.doc(doc_id)
    assert doc is not None
    plan = start_document(m.rt, doc, "t1")
    assert plan is not None and not plan.chunked
    chunkwork.run_chunk(m.rt, doc, plan, 0, may_retry=False, first_try=True)
    doc.dp.chunk_result(0).write_bytes(b"")  # as a power cut may leave a file not fsynced
    chunkwork.run_chunk(m.rt, doc, plan, 0, may_retry=False)
    assert m.engine.calls == {n: 2 for n in range(1, PAGES + 1)}  # extracted again
    results = [json.loads(doc.dp.chunk_result(0).read_text())]
    outcome = finish.decide(m.rt, doc, COMPLETED, results=results)
    assert Outcome.load(doc.dp.outcome) == outcome and outcome.results == results
    doc.dp.chunk_result(0).unlink()  # lost in a power cut after the ending was decided
    assert start_document(m.rt, doc, "t2") is None  # the decided ending is carried out
    assert_completed_once(m)
