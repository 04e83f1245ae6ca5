"""Documents as the API shows them: found by id in Redis and on disk, viewed as one JSON object."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocr_daemon import atomic
from ocr_daemon.commands.lookup import DOC_ID
from ocr_daemon.config import Config, WatchConfig
from ocr_daemon.errors import NotFound
from ocr_daemon.record.disk import Manifest
from ocr_daemon.record.layout import Outputs, WatchPaths
from ocr_daemon.record.progress import percentage
from ocr_daemon.record.state import (
    CANCELLED,
    CHUNK_STATES,
    COMPLETED,
    DOC_STATES,
    FAILED,
    PROCESSING,
    QUEUED,
    TERMINAL,
    DocState,
    StateStore,
)

# Our states as Celery task states (the document task is sent without a result backend
# entry: its state is the document's).
TASK_STATES = {QUEUED: "PENDING", PROCESSING: "STARTED", COMPLETED: "SUCCESS",
               FAILED: "FAILURE", CANCELLED: "REVOKED"}


@dataclass
class Located:
    """Where one document's files are; ``manifest`` while it is in processing/."""

    doc_id: str
    watch: WatchConfig
    paths: WatchPaths
    out: Outputs | None
    manifest: Manifest | None
    live: DocState | None

    def progress_file(self) -> dict[str, Any] | None:
        if self.out is None:
            return None
        for path in (self.out.progress, self.out.failed_progress):
            with contextlib.suppress(OSError, ValueError):
                data: dict[str, Any] = atomic.read_json(path)
                if data.get("doc_id") == self.doc_id:
                    return data
        return None

    def ended_file(self) -> Path | None:
        """The file written last at the end (result or error sidecar), once it is there."""
        if self.out is None:
            return None
        for path in (self.out.result, self.out.error):
            with contextlib.suppress(OSError, ValueError):
                if atomic.read_json(path).get("doc_id") == self.doc_id:
                    return path
        return None


def _outputs_for(paths: WatchPaths, doc_id: str, stem: str, name: str) -> Outputs | None:
    """The outputs of ``stem`` whose progress file is this document's (any sub-folder)."""
    top = paths.outputs("", stem, name)
    for candidate in (top.progress, top.failed_progress):
        if _holds(candidate, doc_id):
            return top
    for folder in (paths.outbox, paths.failed):
        for found in folder.rglob(f"{stem}.progress.json"):
            if _holds(found, doc_id):
                rel = found.parent.relative_to(folder).as_posix()
                return paths.outputs("" if rel == "." else rel, stem, name)
    return None


def _holds(path: Path, doc_id: str) -> bool:
    try:
        return bool(atomic.read_json(path).get("doc_id") == doc_id)
    except (OSError, ValueError, AttributeError):
        return False


def _scan(paths: WatchPaths, doc_id: str) -> Outputs | None:
    """Last resort once Redis has forgotten the document: its progress file, by content."""
    for folder in (paths.outbox, paths.failed):
        for found in folder.rglob("*.progress.json"):
            if _holds(found, doc_id):
                data = atomic.read_json(found)
                rel = found.parent.relative_to(folder).as_posix()
                stem = found.name[: -len(".progress.json")]
                return paths.outputs("" if rel == "." else rel, stem,
                                     str(data.get("source", {}).get("name", stem)))
    return None


def locate(cfg: Config, store: StateStore, doc_id: str) -> Located:
    """The document ``doc_id``: in flight (processing/), or ended (outbox/, failed/)."""
    if not DOC_ID.match(doc_id):
        raise NotFound(f"{doc_id!r} is not a document id", hint="Ids look like "
                       "20261130T032836Z-84e92194 (the `id` of an upload's answer).")
    live = store.get(doc_id)
    watches = cfg.watches
    if live is not None and live.fields.get("watch"):
        watches = sorted(watches, key=lambda w: w.name != live.fields["watch"])
    for watch in watches:
        paths = WatchPaths.of(watch)
        dp = paths.doc(doc_id)
        with contextlib.suppress(OSError, ValueError, TypeError):
            manifest = Manifest.load(dp.manifest)
            out = paths.outputs(manifest.rel_dir, manifest.stem, manifest.name) \
                if manifest.stem else None
            return Located(doc_id, watch, paths, out, manifest, live)
        if live is not None and live.fields.get("watch") == watch.name and live.fields.get("stem"):
            out = _outputs_for(paths, doc_id, live.fields["stem"], live.fields.get("name", ""))
            if out is not None:
                return Located(doc_id, watch, paths, out, None, live)
    for watch in cfg.watches:
        paths = WatchPaths.of(watch)
        out = _scan(paths, doc_id)
        if out is not None:
            return Located(doc_id, watch, paths, out, None, live)
    raise NotFound(f"no document {doc_id}", hint="The id is unknown here, or its files were "
                   "removed from outbox/ and failed/.")


def links(doc_id: str) -> dict[str, str]:
    base = f"/v1/documents/{doc_id}"
    return {"self": base, "text": f"{base}/text", "result": f"{base}/result",
            "events": f"{base}/events", "cancel": f"{base}/cancel",
            "reprocess": f"{base}/reprocess"}


def _chunks_live(live: DocState) -> dict[str, Any]:
    chunks = live.chunks
    counts = Counter(c.state for c in chunks)
    return {"total": len(chunks), **{s: counts.get(s, 0) for s in CHUNK_STATES},
            "items": [{"index": c.index, "pages": c.pages, "state": c.state,
                       "attempts": c.attempts, "error": c.error} for c in chunks]}


def view(found: Located) -> dict[str, Any]:
    """One document: state, progress, chunks, task, error, times, source and links.

    Live state comes from Redis; the progress file fills in what Redis no longer holds.
    A document whose terminal state is in Redis but whose last file is not written yet is
    shown as ``processing`` (its text may not be there yet)."""
    progress = found.progress_file() or {}
    live = found.live
    source = progress.get("source") or {}
    if found.manifest is not None:
        m = found.manifest
        source = {**source, "name": m.name, "path": m.rel_path, "size": m.size,
                  "sha256": m.sha256}
    if live is not None:
        f = live.fields
        state = live.state
        chunks = _chunks_live(live)
        pct = percentage(state, live.chunks)
        task_id, error = f.get("task_id"), live.error()
        times = {k: f.get(k) for k in ("created_at", "started_at", "finished_at", "updated_at")}
        waiting = json.loads(f["waiting"]) if f.get("waiting") else None
    else:
        state = str(progress.get("state", QUEUED))
        chunks = progress.get("chunks") or {"total": 0, "items": []}
        pct = int(progress.get("progress_percentage", 0))
        task_id, error = progress.get("task_id"), progress.get("error")
        times = {k: progress.get(k) for k in ("created_at", "started_at", "finished_at",
                                              "updated_at")}
        waiting = progress.get("waiting")
    ended = found.ended_file() is not None
    ending = state in TERMINAL and not ended
    if ending:
        state, pct = PROCESSING, min(pct, 99)  # ending: its files are being written
    if state not in DOC_STATES:
        state = QUEUED
    manifest_engine = found.manifest.engine if found.manifest else None
    result_engine, page_engines = _result_engines(found) if ended else (None, [])
    return {
        "id": found.doc_id,
        "watch": found.watch.name,
        "name": source.get("name"),
        "original_name": (found.manifest.original_name if found.manifest
                          else source.get("original_name")),
        "state": state,
        "ended": ended,
        "ending": ending,
        "progress_percentage": pct,
        "engine": manifest_engine or result_engine or found.watch.engine,
        "page_engines": page_engines,  # what produced its pages (auto: pdftext, tesseract)
        "source": source,
        "chunks": chunks,
        "task": {"id": task_id, "state": TASK_STATES.get(state, "PENDING")},
        "error": _error(error),
        "waiting": waiting,
        **times,
        "links": links(found.doc_id),
    }


def _result_engines(found: Located) -> tuple[str | None, list[str]]:
    """The engine of a completed document's result, and the engines of its pages."""
    if found.out is None or not found.out.result.exists():
        return None, []
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
        result = atomic.read_json(found.out.result)
        pages = sorted({str(p["engine"]) for p in result.get("pages", []) if p.get("engine")})
        engine = result.get("engine")
        return (str(engine) if engine else None), pages
    return None, []


def _error(error: Any) -> dict[str, Any] | None:
    if not isinstance(error, dict):
        return None
    return {k: error.get(k) for k in ("code", "message", "retryable", "hint")}


def listing(store: StateStore, state: str | None, watch: str | None, limit: int,
            before: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Documents Redis knows (in flight, and ended within state_ttl), newest first, paged by
    id (ids sort by claim time): the page and the cursor of the next one."""
    ids = sorted(set(store.active()) | set(store.recent(500)), reverse=True)
    if before:
        ids = [i for i in ids if i < before]
    out: list[dict[str, Any]] = []
    for doc_id in ids:
        live = store.get(doc_id)
        if live is None:
            continue
        f = live.fields
        if (state and live.state != state) or (watch and f.get("watch") != watch):
            continue
        out.append({"id": doc_id, "watch": f.get("watch"), "name": f.get("name"),
                    "state": live.state,
                    "progress_percentage": percentage(live.state, live.chunks),
                    "chunks": {"total": len(live.chunks),
                               "completed": sum(c.state == COMPLETED for c in live.chunks)},
                    "error": _error(live.error()), "created_at": f.get("created_at"),
                    "finished_at": f.get("finished_at"), "links": links(doc_id)})
        if len(out) >= limit:
            return out, doc_id
    return out, None
