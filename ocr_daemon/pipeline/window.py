"""Windows of chunks: which chunks go out next, and whether a window has really ended.

A chunked document's chunks are sent `chunks_in_flight` at a time (one chord per window),
which keeps its queued messages and Redis memory bounded whatever its size. These plain
functions decide from the chunk files on disk; delivery.tasks sends what they say.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocr_daemon.record.disk import Plan
from ocr_daemon.record.doc import Doc, pending_chunks


@dataclass(frozen=True)
class AfterWindow:
    """What follows a window's callback: ``late`` chunks of the window have not ended (a
    duplicate chunk delivery fired the callback early: look again later); else ``next``
    is the window to send, and when it is empty every chunk has ended: the ending."""

    late: list[int]
    next: list[int]


def first_window(doc: Doc, plan: Plan) -> list[int]:
    """The chunks to send first; a requeued document redoes only those not ended."""
    return pending_chunks(doc, plan)[:doc.watch.chunks_in_flight]


def after_window(doc: Doc, plan: Plan, window: list[int]) -> AfterWindow:
    pending = pending_chunks(doc, plan)
    late = sorted(set(window) & set(pending))
    return AfterWindow(late, [] if late else pending[:doc.watch.chunks_in_flight])
