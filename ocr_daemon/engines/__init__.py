"""The explicit registry of text extraction engines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from pydantic import BaseModel, ValidationError

from ..config import Config, WatchConfig
from ..errors import EngineUnavailable
from . import auto, gemini, tesseract
from .base import Engine, Extraction, Page, PageRequest, PageText
from .pdftext import PdfTextEngine

__all__ = ["REGISTRY", "Engine", "EngineContext", "Extraction", "Page", "PageRequest",
           "PageText", "build", "settings_for"]

S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True)
class EngineContext:
    """What an engine factory may use: the configuration, the watch, and the shared Redis
    (for limits and engine-wide flags that every worker on every host must see)."""

    cfg: Config
    watch: WatchConfig
    redis: redis.Redis | None = None
    prefix: str = "ocrd:"


Factory = Callable[[EngineContext], Engine]


def settings_for(base: S, watch: WatchConfig) -> S:
    """An engine's settings with the watch's engine_options applied (only keys it has)."""
    updates: dict[str, Any] = {k: v for k, v in watch.engine_options.items()
                               if k in type(base).model_fields}
    try:
        return type(base).model_validate({**base.model_dump(), **updates})
    except ValidationError as exc:
        raise EngineUnavailable(f"watch {watch.name}: bad engine_options: {exc}") from None


def _pdftext(ctx: EngineContext) -> Engine:
    return PdfTextEngine(settings_for(ctx.cfg.engines.pdftext, ctx.watch))


REGISTRY: dict[str, Factory] = {
    "pdftext": _pdftext,
    "gemini": gemini.create,
    "tesseract": tesseract.create,
    "auto": auto.create,
}


def build(ctx: EngineContext) -> Engine:
    """The engine a watch asks for, with the watch's engine_options applied."""
    try:
        factory = REGISTRY[ctx.watch.engine]
    except KeyError:
        raise EngineUnavailable(f"engine {ctx.watch.engine!r} is not available") from None
    return factory(ctx)
