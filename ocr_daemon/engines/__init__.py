"""The explicit registry of text extraction engines."""

from __future__ import annotations

from collections.abc import Callable

from ..config import Config, WatchConfig
from ..errors import EngineUnavailable
from .base import Engine, Extraction, Page, PageRequest, PageText
from .pdftext import PdfTextEngine

__all__ = ["REGISTRY", "Engine", "Extraction", "Page", "PageRequest", "PageText", "build"]

Factory = Callable[[Config, WatchConfig], Engine]


def _pdftext(cfg: Config, watch: WatchConfig) -> Engine:
    return PdfTextEngine(cfg.engines.pdftext)


REGISTRY: dict[str, Factory] = {
    "pdftext": _pdftext,
}


def build(cfg: Config, watch: WatchConfig) -> Engine:
    """The engine a watch asks for, with the watch's engine_options applied."""
    try:
        factory = REGISTRY[watch.engine]
    except KeyError:
        raise EngineUnavailable(f"engine {watch.engine!r} is not available") from None
    return factory(cfg, watch)
