"""Inbox entries the watcher leaves alone, and why: for `status` and the metrics.

The watcher never takes links, FIFOs, sockets or devices, hidden and upload-temporary
names, names that match no accepted pattern, or files not whole by their content (until
`incomplete_grace_seconds`). Each is silent in the folder: this module says what is there.
It reads the inbox itself (as `status` may run where no watcher does), at most
``limit`` entries reported per watch, every entry counted.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ocr_daemon.config import WatchConfig
from ocr_daemon.errors import DocumentError
from ocr_daemon.formats.complete import whole
from ocr_daemon.formats.sniff import sniff
from ocr_daemon.intake.filters import Rules

SYMLINK = "symlink"
SPECIAL = "not_a_regular_file"  # FIFO, socket, device
IGNORED = "ignored_name"  # hidden or an upload's temporary name
NO_PATTERN = "no_accepted_pattern"
INCOMPLETE = "incomplete"  # settled but not whole by its content: waits for the grace
NOT_TAKEN = "not_taken"  # whole, accepted and older than STALE_AFTER: is a watcher running?
REASONS = (SYMLINK, SPECIAL, IGNORED, NO_PATTERN, INCOMPLETE, NOT_TAKEN)
STALE_AFTER = 300.0
HINTS = {
    SYMLINK: "links are never followed: copy the file itself into the inbox",
    SPECIAL: "only regular files are taken",
    IGNORED: "hidden and temporary upload names are skipped until renamed",
    NO_PATTERN: "add a pattern to the watch's `patterns` (or `['*']` to take any name and "
                "decide by content)",
    INCOMPLETE: "the file has no end by its format: it is taken after "
                "incomplete_grace_seconds unchanged, and then fails as truncated_document",
    NOT_TAKEN: "a whole, accepted file waiting for minutes: check that `ocr-daemon watch` "
               "(or `run`) is running for this watch",
}


@dataclass(frozen=True)
class Entry:
    watch: str
    path: str  # relative to the inbox
    reason: str
    size: int
    age: float  # seconds since its last change

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hint": HINTS[self.reason]}


def _reason(rules: Rules, path: Path, st: os.stat_result, now: float) -> str | None:
    if stat.S_ISLNK(st.st_mode):
        return SYMLINK
    if not stat.S_ISREG(st.st_mode):
        return SPECIAL
    if not rules.name_accepted(path.name):
        return IGNORED if rules.ignored(path.name) else NO_PATTERN
    try:
        is_whole = whole(path, sniff(path))
    except (DocumentError, OSError):
        is_whole = True  # empty or unsupported: taken, and failed with its own code
    if not is_whole:
        return INCOMPLETE
    return NOT_TAKEN if now - st.st_mtime >= STALE_AFTER else None


def scan(watch: WatchConfig, now: float, limit: int = 50) -> tuple[list[Entry], Counter[str]]:
    """Up to ``limit`` entries of ``watch``'s inbox left alone, and a count of all by reason."""
    inbox = watch.root / "inbox"
    rules = Rules(watch)
    found: list[Entry] = []
    counts: Counter[str] = Counter()
    for dirpath, dirnames, filenames in os.walk(inbox):
        here = Path(dirpath)
        names = list(filenames)
        if watch.recursive:
            dirnames[:] = [d for d in dirnames if not rules.dir_ignored(d)]
        else:  # a folder is not walked; one named like a document is reported
            names += [d for d in dirnames if rules.name_accepted(d)]
            dirnames[:] = []
        for name in names:
            path = here / name
            try:
                st = os.lstat(path)
            except OSError:
                continue  # taken meanwhile
            reason = _reason(rules, path, st, now)
            if reason is None:
                continue
            counts[reason] += 1
            if len(found) < limit:
                found.append(Entry(watch.name, path.relative_to(inbox).as_posix(), reason,
                                   st.st_size, round(max(0.0, now - st.st_mtime), 1)))
    return found, counts
