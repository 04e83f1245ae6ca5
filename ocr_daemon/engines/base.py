"""The engine interface: extract the text of some pages of one file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import redis
from pydantic import BaseModel, ValidationError

from ocr_daemon.clock import Clock, SystemClock
from ocr_daemon.config import Config, WatchConfig
from ocr_daemon.errors import EngineUnavailable

S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True)
class Page:
    number: int  # 1-based page number in the original document
    index: int  # 0-based page (or frame) index in ``PageRequest.path``


@dataclass(frozen=True)
class PageRequest:
    path: Path  # a chunk file, the source PDF, or an image
    mime: str
    pages: tuple[Page, ...]
    layers: bool = False  # also make each OCR page's text layer (the watch outputs pdf)


@dataclass
class PageText:
    number: int
    text: str
    engine: str
    # For a PDF page: which text-layer extractor produced ``text`` (None when OCR did), and
    # the text layer's state: "ok", "none" (no text), "broken" (it failed the quality
    # check, see formats/textlayer.py; ``text_layer_reason`` says why).
    extractor: str | None = None
    text_layer: str | None = None
    text_layer_reason: str | None = None


@dataclass
class Extraction:
    pages: list[PageText]
    warnings: list[str] = field(default_factory=list)
    # Page number -> a one-page text-only PDF (invisible, word-positioned text) from the
    # same OCR run as the page's text; only when the request asked for layers.
    layers: dict[int, bytes] = field(default_factory=dict)
    usage: dict[str, Any] | None = None  # what a remote engine billed (gemini: tokens)


class Engine(Protocol):
    name: str

    def extract(self, request: PageRequest) -> Extraction:
        """Text for every requested page, in request order; raise our errors only."""
        ...


@dataclass
class TextPass:
    """A text-first engine's first pass: the pages its text layer serves, and the rest."""

    read: Extraction  # pages whose text layer passed, in request order
    ocr: tuple[Page, ...]  # pages that need OCR
    # Page number -> why an OCR page's text layer did not serve: (state, reason).
    why: dict[int, tuple[str, str | None]] = field(default_factory=dict)


@runtime_checkable
class TextFirst(Protocol):
    """An engine that reads a PDF's text layer first and OCRs only the pages without a usable
    one (`auto`): the plan runs its text pass in the document task, then fans out the OCR."""

    def text_pass(self, request: PageRequest) -> TextPass:
        """Every requested page's text layer; never OCR. A PDF request only."""
        ...


def has_text(text: str, min_chars: int) -> bool:
    """True when a page's text layer holds at least ``min_chars`` visible characters."""
    return sum(1 for ch in text if not ch.isspace()) >= min_chars


@dataclass(frozen=True)
class EngineContext:
    """What an engine factory may use: the configuration, the watch, and the shared Redis
    (for limits and engine-wide flags that every worker on every host must see)."""

    cfg: Config
    watch: WatchConfig
    redis: redis.Redis | None = None
    prefix: str = "ocrd:"
    clock: Clock = field(default_factory=SystemClock)  # the Runtime's: timestamps in Redis


Factory = Callable[[EngineContext], Engine]


def settings_for(base: S, watch: WatchConfig) -> S:
    """An engine's settings with the watch's engine_options applied (only keys it has)."""
    updates: dict[str, Any] = {k: v for k, v in watch.engine_options.items()
                               if k in type(base).model_fields}
    try:
        return type(base).model_validate({**base.model_dump(), **updates})
    except ValidationError as exc:
        raise EngineUnavailable(f"watch {watch.name}: bad engine_options: {exc}") from None
