"""A clock the test moves by hand: every module reads time through the Runtime's clock."""

from __future__ import annotations

import time


class FakeClock:
    """Stands still until ``advance``. It starts at the wall clock's time because the reaper
    also reads file modification times, which the kernel stamps with real time."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self.mono = 1000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        """Returns at once, the time moved on: a wait with a deadline ends, never hangs."""
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds
