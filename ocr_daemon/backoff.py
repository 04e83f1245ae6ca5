"""Backoff for retries: exponential with full jitter, honouring a server's own delay."""

from __future__ import annotations

import random


def backoff(retries: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number ``retries + 1``."""
    if retry_after is not None and retry_after > 0:
        return min(cap, retry_after) + random.uniform(0, 0.1 * base)
    ceiling = min(cap, base * (2 ** retries))
    return random.uniform(ceiling / 2, ceiling)
