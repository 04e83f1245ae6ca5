"""Housekeeping: nothing grows without bound. Stale temporary files go, and documents listed
as active in Redis whose record is gone from disk are dropped from the list."""

from __future__ import annotations

import os
from pathlib import Path

from ocr_daemon import log
from ocr_daemon.atomic import TEMP_PREFIX, TEMP_SUFFIX
from ocr_daemon.record.layout import WatchPaths
from ocr_daemon.record.state import StateStore

STALE_AFTER = 3600.0  # a temporary file this old was left by a crash mid-write


def stale_temp_files(folder: Path, now: float) -> list[Path]:
    found = []
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in filenames:
            if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
                path = Path(dirpath) / name
                try:
                    if now - path.lstat().st_mtime > STALE_AFTER:
                        found.append(path)
                except OSError:
                    continue
    return found


def tidy(paths: WatchPaths, store: StateStore, now: float | None = None) -> int:
    """Remove stale temporary files of ours in the watch's folders; drop lost active entries."""
    now = store.clock.time() if now is None else now
    removed = 0
    for folder in (paths.inbox, paths.processing, paths.outbox, paths.failed, paths.archive):
        for path in stale_temp_files(folder, now):
            path.unlink(missing_ok=True)
            removed += 1
    for doc_id in store.active():
        live = store.get(doc_id)
        mine = live is not None and live.fields.get("watch") == paths.name
        if live is None or (mine and not paths.doc(doc_id).dir.exists()):
            store.forget_active(doc_id)
            removed += 1
    if removed:
        log.get(watch=paths.name).info("housekeeping", removed=removed)
    return removed
