"""Tokens Gemini billed: per chunk for the result JSON, per day in Redis for `status`.

The counts come from each response's usageMetadata: promptTokenCount (input),
candidatesTokenCount (the answer) and thoughtsTokenCount (thinking, billed as output). Every
response counts, retried and split requests too: they are billed. A cost estimate is made
only when ``price_per_million_input`` and ``price_per_million_output`` are configured; a
request answered through the Batch API is billed at ``batch_discount`` of that (Google's
Batch API: half price).

Daily totals live in the hash ``<prefix>gemini:usage:<UTC date>`` (fields
``<model>\\t<interactive|batch>\\t<count>``), kept ``DAYS_KEPT`` days.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from ocr_daemon.config import GeminiConfig

COUNTS = ("requests", "prompt_tokens", "output_tokens", "thinking_tokens", "total_tokens")
DAYS_KEPT = 8


@dataclass
class Usage:
    """Tokens of one or more responses of one model."""

    model: str
    batch: bool = False
    requests: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None  # an estimate in the configured prices' currency

    def add(self, other: Usage) -> None:
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.cost is not None:
            self.cost = (self.cost or 0.0) + other.cost

    def priced(self, settings: GeminiConfig) -> Usage:
        """This usage with its cost estimate, when prices are configured."""
        self.cost = cost(settings, self.prompt_tokens, self.output_tokens + self.thinking_tokens,
                         self.batch)
        return self

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "mode": "batch" if self.batch else
                               "interactive"}
        out.update({name: getattr(self, name) for name in COUNTS})
        out["cost_estimate"] = None if self.cost is None else round(self.cost, 8)
        return out


def cost(settings: GeminiConfig, input_tokens: int, output_tokens: int,
         batch: bool) -> float | None:
    """Estimated price of these tokens, or None when no prices are configured."""
    p_in, p_out = settings.price_per_million_input, settings.price_per_million_output
    if p_in is None or p_out is None:
        return None
    factor = settings.batch_discount if batch else 1.0
    return (input_tokens * p_in + output_tokens * p_out) / 1e6 * factor


def total(chunks: Iterable[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The sum of the chunks' usage records (None when no chunk has one: another engine)."""
    found = [c for c in chunks if c]
    if not found:
        return None
    out: dict[str, Any] = {name: sum(int(c.get(name) or 0) for c in found) for name in COUNTS}
    costs = [c["cost_estimate"] for c in found if c.get("cost_estimate") is not None]
    out["cost_estimate"] = round(sum(costs), 8) if costs else None
    out["models"] = sorted({str(c.get("model")) for c in found})
    return out


def day(now: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if now is None else now, UTC
                                  ).strftime("%Y-%m-%d")


def _key(prefix: str, date: str) -> str:
    return f"{prefix}gemini:usage:{date}"


def record_day(client: redis.Redis, prefix: str, usage: Usage) -> None:
    """Add one response's usage to today's totals in Redis."""
    name = _key(prefix, day())
    mode = "batch" if usage.batch else "interactive"
    pipe = client.pipeline(transaction=False)
    for count in COUNTS:
        pipe.hincrby(name, f"{usage.model}\t{mode}\t{count}", getattr(usage, count))
    if usage.cost is not None:
        pipe.hincrbyfloat(name, f"{usage.model}\t{mode}\tcost", usage.cost)
    pipe.expire(name, DAYS_KEPT * 86400)
    pipe.execute()


def today(client: redis.Redis, prefix: str, now: float | None = None) -> dict[str, Any]:
    """Today's (UTC) totals by model and mode, and in all, with the cost estimate (null when
    no prices are configured)."""
    date = day(now)
    models: dict[str, dict[str, Any]] = {}
    for field, value in client.hgetall(_key(prefix, date)).items():
        model, mode, count = str(field).split("\t")
        entry = models.setdefault(model, {}).setdefault(mode, {n: 0 for n in COUNTS})
        entry[count] = float(value) if count == "cost" else int(value)
    every = [e for m in models.values() for e in m.values()]
    costs = [float(e["cost"]) for e in every if "cost" in e]
    totals: dict[str, Any] = {n: sum(int(e[n]) for e in every) for n in COUNTS}
    totals["cost_estimate"] = round(sum(costs), 8) if costs else None
    return {"date": date, "models": models, **totals}
