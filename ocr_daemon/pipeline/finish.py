"""Finish a document: aggregate chunk results, write outputs or fail it, archive the original.

Every ending is first decided and recorded (processing/<doc_id>/outcome.json), then carried
out step by step; each step can run again, so a redelivered or interrupted finish ends with
the same files, never duplicates.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from ocr_daemon import atomic, log
from ocr_daemon.clock import iso
from ocr_daemon.engines.gemini.usage import total as usage_total
from ocr_daemon.errors import ChunksFailed, OcrDaemonError
from ocr_daemon.pipeline import searchable
from ocr_daemon.record.disk import ChunkError, ChunkResult, Outcome, Plan
from ocr_daemon.record.doc import Doc, pending_chunks
from ocr_daemon.record.layout import TRASH_PREFIX, free_name
from ocr_daemon.record.locks import Lock
from ocr_daemon.record.progress import source_info
from ocr_daemon.record.state import CANCELLED, COMPLETED, FAILED
from ocr_daemon.runtime import Runtime

RESULT_SCHEMA = "ocr-daemon/result/v1"
ERROR_SCHEMA = "ocr-daemon/error/v1"


# The lock on a document's ending is renewed while its holder lives (a long searchable PDF
# join keeps it); a worker killed while holding it blocks the document for at most
# ENDING_LOCK_TTL seconds (it was a fixed 60 s: the chaos test's whole-daemon kill, landing
# between a result and the record's removal, left the record there for a minute). Waiting
# for it lasts up to ENDING_LOCK_WAIT, within the task's soft time limit; then a retry.
ENDING_LOCK_TTL = 10.0
ENDING_LOCK_WAIT = 60.0


def document_lock(rt: Runtime, doc: Doc) -> Lock:
    """The lock every ending of ``doc`` (and its re-queueing) is decided and carried out under.
    Waiting for it stays well inside the task's soft time limit; not getting it is retried."""
    wait = min(ENDING_LOCK_WAIT, rt.cfg.workers.soft_time_limit / 3)
    return rt.store.lock(f"aggregate:{doc.doc_id}", timeout=ENDING_LOCK_TTL, wait=wait,
                         renewed=True)


def resume(rt: Runtime, doc: Doc, plan: Plan | None) -> str:
    """Carry out an ending that was decided and interrupted."""
    with document_lock(rt, doc):
        outcome = doc.outcome()
        if not doc.dp.manifest.exists() or outcome is None:
            return "gone"
        return carry_out(rt, doc, plan, outcome)


def _pages(doc: Doc, plan: Plan, outcome: Outcome, usage: dict[int, Any] | None = None
           ) -> tuple[list[dict[str, Any]], list[str]]:
    """Page records in page order (missing pages as empty, flagged) and chunk warnings;
    each chunk's usage (tokens a remote engine billed) into ``usage`` when given. A
    one-pass document's results come from its outcome, a chunked one's from results/."""
    pages: list[dict[str, Any]] = []
    warnings: list[str] = []
    recorded = ({r["index"]: ChunkResult.from_dict(r) for r in outcome.results}
                if outcome.results is not None else None)
    for spec in plan.chunks:
        try:
            if recorded is None:
                result = ChunkResult.load(doc.dp.chunk_result(spec.index))
            else:
                result = recorded[spec.index]
        except (FileNotFoundError, KeyError):
            pages += [{"number": n, "text": "", "engine": None, "missing": True}
                      for n in spec.pages]
            continue
        pages += result.pages
        warnings += result.warnings
        if usage is not None:
            usage[spec.index] = result.usage
    # `auto`'s text-layer chunks come first in the plan, its OCR chunks after them.
    pages.sort(key=lambda page: int(page["number"]))
    return pages, warnings


def _one_pass_results(doc: Doc, plan: Plan) -> list[dict[str, Any]] | None:
    """A one-pass document's chunk results, to be recorded with its ending (its results/
    files are not fsynced); None when one was torn by a power cut: it is removed, and
    extracted again."""
    results = []
    for spec in plan.chunks:
        path = doc.dp.chunk_result(spec.index)
        try:
            results.append(ChunkResult.load(path).to_dict())
        except FileNotFoundError:
            continue
        except (ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            return None
    return results


def _chunk_errors(doc: Doc, plan: Plan) -> list[dict[str, Any]]:
    errors = []
    for spec in plan.chunks:
        path = doc.dp.chunk_error(spec.index)
        if path.exists():
            errors.append({"index": spec.index, "pages": [spec.first_page, spec.last_page],
                           "error": ChunkError.load(path).error})
    return errors


def _document_error(plan: Plan, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """A one-chunk document fails with its chunk's error; several share a code when they agree."""
    first = errors[0]["error"]
    if not plan.chunked:
        return dict(first)
    pages = errors[0]["pages"]
    error = ChunksFailed(
        f"{len(errors)} of {len(plan.chunks)} chunks failed; first, pages {pages[0]}-{pages[1]}: "
        f"{first['message']}", hint=first.get("hint")).to_dict()
    if len({e["error"]["code"] for e in errors}) == 1:  # the chunks' own code says more
        error["code"] = first["code"]
        error["retryable"] = all(e["error"].get("retryable") for e in errors)
    return error


# What aggregate returns when some chunks have not ended yet: nothing was decided (the
# caller looks again later; a duplicate chunk delivery can fire a window's chord early).
PENDING = "pending"


def aggregate(rt: Runtime, doc: Doc, plan: Plan) -> str:
    """Decide the ending from the chunk files on disk, then carry it out (under a lock).
    Returns the final state, "gone" (ended before), or PENDING (chunks have not ended)."""
    with document_lock(rt, doc):
        if not doc.dp.manifest.exists():
            return "gone"
        outcome = doc.outcome()
        if outcome is None:
            if pending_chunks(doc, plan):
                return PENDING
            results = None if plan.chunked else _one_pass_results(doc, plan)
            if results is None and not plan.chunked:
                return PENDING  # a torn result: the document task extracts it again
            errors = _chunk_errors(doc, plan)
            if errors and doc.watch.on_chunk_failure == "fail":
                outcome = decide(rt, doc, FAILED, error=_document_error(plan, errors),
                                 chunk_errors=errors, results=results)
            else:
                lost = [f"pages {e['pages'][0]}-{e['pages'][1]} missing: {e['error']['message']}"
                        for e in errors]
                outcome = decide(rt, doc, COMPLETED, warnings=lost, chunk_errors=errors,
                                 results=results)
        return carry_out(rt, doc, plan, outcome)


def fail_document(rt: Runtime, doc: Doc, exc: OcrDaemonError, plan: Plan | None = None,
                  state: str = FAILED) -> str:
    """End a document as failed (or cancelled) with ``exc`` as its reason."""
    with document_lock(rt, doc):
        if not doc.dp.manifest.exists():
            return "gone"
        outcome = doc.outcome() or decide(
            rt, doc, state, error=exc.to_dict(),
            chunk_errors=_chunk_errors(doc, plan) if plan else [],
            results=_one_pass_results(doc, plan) if plan and not plan.chunked else None)
        return carry_out(rt, doc, plan, outcome)


def decide(rt: Runtime, doc: Doc, state: str, *, error: dict[str, Any] | None = None,
           chunk_errors: list[dict[str, Any]] | None = None, warnings: list[str] | None = None,
           duplicate_of: dict[str, Any] | None = None,
           results: list[dict[str, Any]] | None = None) -> Outcome:
    """Decide the ending and record it on disk (fsynced) before any of it is carried out;
    ``results``: a one-pass document's chunk results (Outcome.results)."""
    out = doc.out
    if state == COMPLETED:
        target: Path | None = (free_name(out.archive, doc.manifest.name, doc.doc_id)
                               if doc.watch.on_success == "archive" else None)
    else:
        target = free_name(out.failed, out.original_name, doc.doc_id)
    outcome = Outcome(
        state=state,
        original_to=str(target.relative_to(doc.paths.root)) if target else None,
        decided_at=iso(rt.clock.time()),
        error=error, chunk_errors=chunk_errors or [], warnings=warnings or [],
        duplicate_of=duplicate_of, results=results,
    )
    outcome.save(doc.dp.outcome)
    return outcome


def carry_out(rt: Runtime, doc: Doc, plan: Plan | None, outcome: Outcome) -> str:
    state = outcome.state
    if outcome.duplicate_of:
        _skip(rt, doc, outcome)
    elif state == COMPLETED and plan is not None:
        _complete(rt, doc, plan, outcome)
    else:
        _fail(rt, doc, plan, outcome)
    _remove_record(doc.dp.dir)
    log.get(doc_id=doc.doc_id, watch=doc.watch.name).info(
        "document_" + state, original_to=outcome.original_to,
        error=(outcome.error or {}).get("code"))
    rt.ended(doc, state)  # its hooks (metrics, webhook) once every terminal file is written
    return state


def skip_duplicate(rt: Runtime, doc: Doc, earlier: dict[str, Any]) -> str:
    """`duplicates: skip`: the original is archived unprocessed; its sidecars name the earlier
    document whose results already exist."""
    with document_lock(rt, doc):
        outcome = doc.outcome() or decide(rt, doc, COMPLETED, duplicate_of=earlier)
        return carry_out(rt, doc, None, outcome)


def _skip(rt: Runtime, doc: Doc, outcome: Outcome) -> None:
    earlier = outcome.duplicate_of or {}
    now = iso(rt.clock.time())
    rt.progress.publish(doc.out, doc.manifest, None, wait=True, write={
        "state": COMPLETED, "finished_at": now, "duplicate_of": earlier})
    _move_original(doc, outcome)
    atomic.write_json(doc.out.result, {
        "schema": RESULT_SCHEMA,
        "doc_id": doc.doc_id,
        "watch": doc.watch.name,
        "source": source_info(doc.manifest, None),
        "engine": None,
        "pages": [],
        "chunks": [],
        "duplicate_of": earlier,
        "started_at": outcome.decided_at,
        "finished_at": now,
        "warnings": [f"duplicate of document {earlier['doc_id']} (results: "
                     f"{earlier['result']}): not processed again"],
    })


def _remove_record(record: Path) -> None:
    """Remove processing/<doc_id>/ in one step: renamed away first (a worker killed in the
    middle of deleting it must not leave half a record behind), then deleted; housekeeping
    finishes a deletion that was cut short."""
    trash = record.parent / f"{TRASH_PREFIX}{record.name}"
    try:
        os.rename(record, trash)
    except FileNotFoundError:
        return  # removed by an earlier run of these steps
    except OSError:
        trash = record  # renaming refused (a late writer's file in it): delete in place
    for _ in range(5):
        shutil.rmtree(trash, ignore_errors=True)
        if not trash.exists():
            return
        time.sleep(0.05)


def _move_original(doc: Doc, outcome: Outcome) -> None:
    if not doc.dp.source.exists():
        return  # moved by an earlier, interrupted run of these steps
    if outcome.original_to is None:
        doc.dp.source.unlink()
    else:
        atomic.move(doc.dp.source, doc.paths.root / outcome.original_to)


def _complete(rt: Runtime, doc: Doc, plan: Plan, outcome: Outcome) -> None:
    out = doc.out
    usage: dict[int, Any] = {}
    pages, warnings = _pages(doc, plan, outcome, usage)
    warnings = plan.warnings + warnings + outcome.warnings
    if "text" in doc.watch.outputs:
        # Its data fsynced, its folder not: the result JSON's rename comes after this one in
        # the same folder, and that folder's fsync after it makes both durable, in order.
        atomic.write_bytes(out.text, "\f".join(p["text"] for p in pages).encode("utf-8"),
                           sync_dir=False)
    pdf_file = None
    if doc.watch.pdf_output:  # before the original is archived: the PDF is made from it
        pdf_file, pdf_warnings = searchable.write_pdf(doc, plan, pages)
        warnings += pdf_warnings
    now = iso(rt.clock.time())
    # The state written, the progress file from it, and that state returned (the chunks'
    # attempts): one round trip where a write, a read for the file and a read for the
    # attempts took three.
    live = rt.progress.publish(out, doc.manifest, plan, wait=True,
                               write={"state": COMPLETED, "finished_at": now})
    attempts = {c.index: c.attempts for c in live.chunks} if live else {}
    _move_original(doc, outcome)  # before the result: its presence means everything is done
    atomic.write_json(out.result, {
        "schema": RESULT_SCHEMA,
        "doc_id": doc.doc_id,
        "watch": doc.watch.name,
        "source": source_info(doc.manifest, plan),
        "engine": doc.watch.engine,
        "pages": pages,
        "chunks": [{"index": c.index, "pages": [c.first_page, c.last_page],
                    "attempts": attempts.get(c.index), "usage": usage.get(c.index)}
                   for c in plan.chunks],
        "usage": usage_total(usage.values()),
        "chunk_errors": outcome.chunk_errors,
        "text_file": out.text.name if "text" in doc.watch.outputs else None,
        **({"pdf_file": pdf_file} if doc.watch.pdf_output else {}),
        "started_at": plan.started_at,
        "finished_at": now,
        "warnings": warnings,
    })


def _fail(rt: Runtime, doc: Doc, plan: Plan | None, outcome: Outcome) -> None:
    """Original to failed/, partial text, progress; the error sidecar last (it marks the end)."""
    out = doc.out
    _move_original(doc, outcome)
    if plan is not None:
        pages, _ = _pages(doc, plan, outcome)
        if any(not p.get("missing") for p in pages):
            atomic.write_text(out.partial_text, "\f".join(p["text"] for p in pages))
    now = iso(rt.clock.time())
    state = outcome.state if outcome.state in (FAILED, CANCELLED) else FAILED
    if doc.manifest.sha256:  # dropping it again must process it, not skip it as a duplicate
        rt.store.forget_sha(doc.watch.name, doc.manifest.sha256, doc.doc_id)
    rt.progress.publish(out, doc.manifest, plan, wait=True,
                        write={"state": state, "finished_at": now, "error": outcome.error})
    atomic.write_json(out.error, {
        "schema": ERROR_SCHEMA,
        "doc_id": doc.doc_id,
        "watch": doc.watch.name,
        "state": state,
        "source": source_info(doc.manifest, plan),
        "original": outcome.original_to,
        "error": outcome.error,
        "chunk_errors": outcome.chunk_errors,
        "partial_text": out.partial_text.name if out.partial_text.exists() else None,
        "failed_at": now,
    })
