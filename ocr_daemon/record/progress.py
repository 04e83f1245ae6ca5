"""The progress sidecar: one snapshot of a document's state, rewritten atomically on each change."""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

from ocr_daemon import atomic
from ocr_daemon.clock import Clock, iso
from ocr_daemon.errors import ServiceUnavailable
from ocr_daemon.record.disk import Manifest, Plan
from ocr_daemon.record.layout import Outputs
from ocr_daemon.record.state import (
    CHUNK_STATES,
    COMPLETED,
    FAILED,
    PROCESSING,
    QUEUED,
    TERMINAL,
    ChunkState,
    DocState,
    StateStore,
)

SCHEMA = "ocr-daemon/progress/v1"


def percentage(state: str, chunks: list[ChunkState]) -> int:
    """completed: 100; otherwise the share of pages in finished chunks (at most 99)."""
    if state == COMPLETED:
        return 100
    total = sum(c.pages[1] - c.pages[0] + 1 for c in chunks)
    if not total:
        return 0
    done = sum(c.pages[1] - c.pages[0] + 1 for c in chunks if c.state in (COMPLETED, FAILED))
    return min(99, (100 * done) // total)


def source_info(manifest: Manifest, plan: Plan | None) -> dict[str, Any]:
    info = {
        "name": manifest.name,
        "path": manifest.rel_path,
        "sha256": manifest.sha256,
        "size": manifest.size,
        "mime": plan.mime if plan else None,
        "pages": plan.pages if plan else None,
        "decrypted": plan.decrypted if plan else False,  # never which password
    }
    if manifest.original_name is not None:  # an upload: the name its client sent
        info["original_name"] = manifest.original_name
    return info


def snapshot(manifest: Manifest, plan: Plan | None, live: DocState | None,
             now: float) -> dict[str, Any]:
    fields = live.fields if live else {}
    chunks = live.chunks if live else []
    state = fields.get("state", QUEUED)
    counts = {s: sum(1 for c in chunks if c.state == s) for s in CHUNK_STATES}
    return {
        "schema": SCHEMA,
        "doc_id": manifest.doc_id,
        "watch": manifest.watch,
        "source": source_info(manifest, plan),
        "state": state,
        "progress_percentage": percentage(state, chunks),
        "chunks": {
            "total": len(chunks) if chunks else (len(plan.chunks) if plan else 0),
            "completed": counts[COMPLETED],
            "failed": counts[FAILED],
            "processing": counts[PROCESSING],
            "queued": counts[QUEUED],
            "items": [
                {
                    "index": c.index,
                    "pages": c.pages,
                    "state": c.state,
                    "attempts": c.attempts,
                    "error": c.error,
                    "started_at": c.started_at,
                    "finished_at": c.finished_at,
                }
                for c in chunks
            ],
        },
        "task_id": fields.get("task_id"),
        "error": live.error() if live else None,
        "waiting": json.loads(fields["waiting"]) if fields.get("waiting") else None,
        "created_at": fields.get("created_at") or manifest.claimed_at,
        "started_at": fields.get("started_at"),
        "finished_at": fields.get("finished_at"),
        "updated_at": iso(now),
    }


class ProgressPublisher:
    """Writes the sidecar from the live state: one writer at a time per document, never a
    stale snapshot last, and never a wait.

    Every state change bumps a version (StateStore); a publisher that finds the writer's
    lock taken returns at once, because the holder re-checks the version after releasing
    the lock and writes again if it moved. Twenty chunks finishing together cost a few
    writes, not twenty in a queue.
    """

    def __init__(self, store: StateStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def publish(self, out: Outputs, manifest: Manifest, plan: Plan | None,
                wait: bool = False, write: dict[str, Any] | None = None) -> DocState | None:
        """Write the sidecar; ``wait`` (terminal states) returns only once it is on disk, so
        that the result or error file written next is never ahead of it. Returns the state
        it wrote last (None when another writer held the lock): a caller that needs the
        state after its own write reads it here, not in another round trip.

        ``write``: document fields (StateStore.set_doc) written first, in the same round
        trip as taking the writer's lock and reading the state."""
        doc_id = manifest.doc_id
        token = uuid.uuid4().hex
        deadline = self.clock.monotonic() + 10
        while True:
            if write is not None:
                held, live = self.store.set_doc_taking(doc_id, token, **write)
                write = None  # written: a second look only takes the lock
            else:
                held, live = self.store.take_progress(doc_id, token)  # lock + state: one trip
            if not held:
                if not wait:
                    return None  # the holder will see the newer version and write again
                if self.clock.monotonic() > deadline:
                    raise ServiceUnavailable(f"the progress lock of {doc_id} stays taken")
                self.clock.sleep(0.01)
                continue
            try:
                self._write(out, snapshot(manifest, plan, live, self.clock.time()))
            finally:
                version = self.store.give_progress(doc_id, token)  # unlock + version: one trip
            if live is None or version == live.version:
                return live

    @staticmethod
    def _write(out: Outputs, data: dict[str, Any]) -> None:
        """Live states are written without fsync (rewritten after a crash); a terminal one
        is fsynced, since nothing rewrites it. Its folder is fsynced by the result or error
        file written next to it. A failed or cancelled document's file moves to failed/."""
        terminal = data["state"] in TERMINAL
        moves = terminal and data["state"] != COMPLETED
        atomic.write_json(out.failed_progress if moves else out.progress, data,
                          durable=terminal, sync_dir=False)
        if moves:
            with contextlib.suppress(FileNotFoundError):
                out.progress.unlink()
                atomic.fsync_dir(out.progress.parent)  # the live file must not come back
