"""Settling: a file is taken only when its size, mtime and inode stayed the same long enough."""

from __future__ import annotations

import os
from dataclasses import dataclass

# An empty file is usually an upload that has not started writing yet: wait longer for it.
EMPTY_FACTOR = 10.0
EMPTY_MIN_SECONDS = 5.0
# A file still changing after this long is reported (once) in the logs; it is never dropped.
REPORT_AFTER = 600.0


@dataclass
class Look:
    signature: tuple[int, int, int]
    since: float  # when this signature was first seen
    first_seen: float
    last: float
    looks: int = 1
    reported: bool = False


class Settler:
    def __init__(self, settle_seconds: float, settle_checks: int,
                 look_interval: float = 0.0) -> None:
        self.settle_seconds = settle_seconds
        self.settle_checks = settle_checks
        self.look_interval = look_interval  # polling: equal looks count only this far apart
        self.looks: dict[str, Look] = {}

    def observe(self, path: str, st: os.stat_result, now: float) -> bool:
        """Record one look at ``path``; True when it has settled."""
        sig = (st.st_size, st.st_mtime_ns, st.st_ino)
        look = self.looks.get(path)
        if look is None:
            look = self.looks[path] = Look(sig, now, now, now)
        elif look.signature != sig:
            look.signature, look.since, look.looks, look.last = sig, now, 1, now
        elif now - look.last >= self.look_interval:
            look.looks += 1
            look.last = now
        wait = self.settle_seconds
        if st.st_size == 0:
            wait = max(wait * EMPTY_FACTOR, EMPTY_MIN_SECONDS)
        return look.looks >= self.settle_checks and now - look.since >= wait

    def restart(self, path: str, now: float) -> None:
        """Start the wait again (a writer still has the file open)."""
        look = self.looks.get(path)
        if look is not None:
            look.since, look.looks, look.last = now, 1, now

    def unsettled_too_long(self, path: str, now: float) -> bool:
        """True once for a file that has kept changing for REPORT_AFTER seconds."""
        look = self.looks.get(path)
        if look is None or look.reported or now - look.first_seen < REPORT_AFTER:
            return False
        look.reported = True
        return True

    def forget(self, path: str) -> None:
        self.looks.pop(path, None)

    def pending(self) -> list[str]:
        return list(self.looks)
