"""Benchmarks report their headline figures as rows for `bench/run`'s single table."""

from __future__ import annotations

import json

PREFIX = "ROWS "


def emit(rows: list[tuple[str, str, str, bool | None]]) -> None:
    """(measure, value, target, met) per row; met is None when there is no target."""
    print(PREFIX + json.dumps(rows), flush=True)
