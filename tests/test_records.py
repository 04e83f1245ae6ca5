"""The typed records of a document load what older versions wrote, and save the same fields."""

from __future__ import annotations

import json
from pathlib import Path

from ocr_daemon.record.disk import ChunkError, ChunkResult, DispatchNote, Outcome
from ocr_daemon.record.layout import DocPaths


def write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_every_path_of_a_document_is_under_its_record(tmp_path: Path) -> None:
    dp = DocPaths(tmp_path / "processing" / "20261202T000000Z-abcd1234")
    assert dp.chunk_result(3) == dp.dir / "results" / "00003.json"
    assert dp.chunk_error(3) == dp.dir / "results" / "00003.error.json"
    assert dp.dispatch.name == "dispatch.json" and dp.outcome.name == "outcome.json"


def test_a_dispatch_note_of_the_old_writer_loads_and_round_trips(tmp_path: Path) -> None:
    path = write(tmp_path / "dispatch.json", {"task_id": "t-1",
                                               "queued_at": "2026-12-01T00:00:00.000Z",
                                               "attempts": 2})
    note = DispatchNote.load(path)
    assert note == DispatchNote("t-1", "2026-12-01T00:00:00.000Z", 2)
    DispatchNote("t-2", "2026-12-02T00:00:00.000Z", 3).save(path)
    assert json.loads(path.read_text()) == {"task_id": "t-2",
                                            "queued_at": "2026-12-02T00:00:00.000Z",
                                            "attempts": 3}


def test_a_missing_or_torn_dispatch_note_reads_as_none(tmp_path: Path) -> None:
    assert DispatchNote.load(tmp_path / "dispatch.json") is None
    torn = tmp_path / "torn.json"
    torn.write_text('{"task_id": "t-', encoding="utf-8")
    assert DispatchNote.load(torn) is None


def test_outcomes_written_by_the_old_dict_code_load(tmp_path: Path) -> None:
    error = {"code": "corrupt_pdf", "message": "bad", "retryable": False, "hint": None}
    failed = Outcome.load(write(tmp_path / "f.json", {
        "state": "failed", "original_to": "failed/a.pdf", "decided_at": "x",
        "error": error, "chunk_errors": []}))
    assert failed == Outcome("failed", "failed/a.pdf", "x", error=error)
    done = Outcome.load(write(tmp_path / "c.json", {
        "state": "completed", "original_to": None, "decided_at": "y",
        "warnings": ["pages 1-2 missing: bad"], "chunk_errors": [{"index": 0}]}))
    assert done == Outcome("completed", None, "y", chunk_errors=[{"index": 0}],
                           warnings=["pages 1-2 missing: bad"])
    skipped = Outcome.load(write(tmp_path / "s.json", {
        "state": "completed", "original_to": "archive/a.pdf", "decided_at": "z",
        "duplicate_of": {"doc_id": "d0"}}))
    assert skipped is not None and skipped.duplicate_of == {"doc_id": "d0"}
    assert Outcome.load(tmp_path / "none.json") is None


def test_an_outcome_saves_the_field_names_the_old_code_read(tmp_path: Path) -> None:
    path = tmp_path / "outcome.json"
    Outcome("failed", "failed/a.pdf", "x", error={"code": "stalled"}).save(path)
    data = json.loads(path.read_text())
    assert data == {"state": "failed", "original_to": "failed/a.pdf", "decided_at": "x",
                    "error": {"code": "stalled"}, "chunk_errors": [], "warnings": []}
    Outcome("completed", None, "y", duplicate_of={"doc_id": "d0"}).save(path)
    assert json.loads(path.read_text())["duplicate_of"] == {"doc_id": "d0"}
    assert "error" not in json.loads(path.read_text())


def test_chunk_files_keep_their_format(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    result_path = tmp_path / "results" / "00000.json"
    ChunkResult(0, [{"number": 1, "text": "a", "engine": "pdftext"}], ["w"]).save(result_path)
    assert json.loads(result_path.read_text()) == {
        "schema": "ocr-daemon/chunk-result/v1", "index": 0,
        "pages": [{"number": 1, "text": "a", "engine": "pdftext"}], "warnings": ["w"]}
    assert ChunkResult.load(result_path).pages[0]["text"] == "a"
    ChunkResult(0, [], [], {"prompt": 10}).save(result_path)  # a billed chunk says so
    assert json.loads(result_path.read_text())["usage"] == {"prompt": 10}
    assert ChunkResult.load(result_path).usage == {"prompt": 10}
    error_path = tmp_path / "results" / "00000.error.json"
    ChunkError(0, {"code": "ocr_failed"}).save(error_path)
    assert json.loads(error_path.read_text()) == {"index": 0, "error": {"code": "ocr_failed"}}
    assert ChunkError.load(error_path) == ChunkError(0, {"code": "ocr_failed"})
