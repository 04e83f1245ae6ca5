"""The engines' settings (engines: gemini, tesseract, pdftext, plugins), validated."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from ocr_daemon.config.base import (
    PositiveFloat,
    PositiveInt,
    _Model,
)

ThinkingLevel = Literal["minimal", "low", "medium", "high"]
# The default model: Gemini 3.1 Flash-Lite, stable and the cheapest current Gemini that reads
# PDFs and images (gemini-2.5-flash, the old default, is retired on 2026-12-01).
DEFAULT_GEMINI_MODEL = "gemini-3.1-flash-lite"


def gemini_generation(model: str) -> int | None:
    """The major version of a Gemini model id (2 for gemini-2.5-flash), None if not named so."""
    match = re.match(r"^(?:models/)?gemini-(\d+)(?:[.-]|$)", model)
    return int(match.group(1)) if match else None


def thinking_levels(model: str) -> frozenset[str] | None:
    """The thinking levels a model takes: none before Gemini 3, no `minimal` for a Pro model;
    None when the id names no known family (a proxy's alias): the server decides."""
    generation = gemini_generation(model)
    if generation is None:
        return None
    if generation < 3:
        return frozenset()
    if "-pro" in model:
        return frozenset({"low", "medium", "high"})
    return frozenset({"minimal", "low", "medium", "high"})


class GeminiConfig(_Model):
    model: str = DEFAULT_GEMINI_MODEL
    api_key_env: str = "GEMINI_API_KEY"
    api_key_file: Path | None = None
    base_url: str | None = None
    timeout: PositiveFloat = 120.0
    max_output_tokens: PositiveInt = 16384
    # Gemini 2.5 takes a thinking budget in tokens, Gemini 3 a thinking level; set one at
    # most. Neither: 0 for a 2.x model, `minimal` (or `low` for a Pro) for a 3.x model.
    thinking_budget: Annotated[int, Field(ge=-1)] | None = None
    thinking_level: ThinkingLevel | None = None
    requests_per_minute: PositiveInt = 60
    tokens_per_minute: PositiveInt = 1_000_000
    prompt: str | None = None
    rate_window: PositiveInt = 60  # seconds the limiter measures over (quotas scaled to it)
    tokens_per_page: PositiveInt = 258  # input tokens counted per PDF page or image tile
    inline_max_bytes: PositiveInt = 20_000_000  # larger requests use the File API
    max_attempts: PositiveInt = 4  # per request (429, 5xx, timeouts) before a task retry
    retry_backoff: PositiveFloat = 1.0  # first in-process retry after about this long
    max_wait: PositiveFloat = 60.0  # most seconds a chunk waits in-process, all waits added
    refusal_retries: Annotated[int, Field(ge=0, le=5)] = 2  # RECITATION/SAFETY/MAX_TOKENS
    quota_pause: PositiveFloat | None = None  # daily quota spent: null = until it resets
    # Cost estimates (result JSON, status): list prices per million tokens, thinking billed
    # as output; null: tokens are counted, no cost is estimated. The Batch API bills
    # batch_discount of them.
    price_per_million_input: Annotated[float, Field(ge=0)] | None = None
    price_per_million_output: Annotated[float, Field(ge=0)] | None = None
    batch_discount: Annotated[float, Field(gt=0, le=1)] = 0.5
    # The Batch API (half price, results within 24 h): interactive sends every chunk at once;
    # batch collects chunks into batch jobs; auto uses batch while more than
    # batch_threshold_pages pages wait for Gemini (a backlog), interactive otherwise.
    mode: Literal["interactive", "batch", "auto"] = "interactive"
    batch_threshold_pages: PositiveInt = 200
    batch_collect_seconds: Annotated[float, Field(ge=0)] = 30.0  # staged chunks wait this
    # long for others before a job is sent (or until batch_max_requests are staged)
    batch_max_requests: PositiveInt = 500  # chunk requests per job
    batch_inline_max_bytes: PositiveInt = 20_000_000  # larger jobs go as a JSONL file
    batch_poll_interval: PositiveFloat = 30.0  # first seconds between polls of a job ...
    batch_poll_max: PositiveFloat = 600.0  # ... growing with its age up to this
    batch_fallback: Literal["interactive", "fail"] = "interactive"  # a job failed/expired

    @model_validator(mode="after")
    def _thinking(self) -> GeminiConfig:
        if self.thinking_budget is not None and self.thinking_level is not None:
            raise ValueError("thinking_level: set thinking_level (Gemini 3) or thinking_budget "
                             "(Gemini 2.5), not both")
        levels = thinking_levels(self.model)
        if self.thinking_level is not None and levels is not None \
                and self.thinking_level not in levels:
            takes = (f"takes {sorted(levels)}" if levels
                     else "takes thinking_budget, not a thinking level")
            raise ValueError(f"thinking_level: {self.thinking_level!r} is not a level model "
                             f"{self.model} takes (it {takes})")
        return self

    def thinking(self) -> tuple[int | None, str | None]:
        """(budget, level) to send: the configured one, else the model family's cheapest."""
        if self.thinking_budget is not None or self.thinking_level is not None:
            return self.thinking_budget, self.thinking_level
        levels = thinking_levels(self.model)
        if levels is None or not levels:
            return 0, None
        return None, "minimal" if "minimal" in levels else "low"


class TesseractConfig(_Model):
    languages: str = "eng"
    dpi: Annotated[int, Field(ge=50, le=1200)] = 300
    timeout: PositiveFloat = 180.0
    psm: Literal[1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13] = 3  # tesseract --psm (page layout)
    binary: str = "tesseract"  # the program: a name on PATH or a path


class PdftextConfig(_Model):
    min_chars: PositiveInt = 1  # a page with fewer non-space characters has no text layer


class EnginesConfig(_Model):
    gemini: GeminiConfig = GeminiConfig()
    tesseract: TesseractConfig = TesseractConfig()
    pdftext: PdftextConfig = PdftextConfig()
    plugins: list[str] = []  # modules with ENGINES = {name: factory}: more engine names


