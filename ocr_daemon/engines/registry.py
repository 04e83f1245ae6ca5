"""The explicit registry of text extraction engines: engine name -> factory."""

from __future__ import annotations

from typing import cast

from ocr_daemon.config import BUILTIN_ENGINES, Config
from ocr_daemon.engines import auto, plugins, tesseract
from ocr_daemon.engines.base import Engine, EngineContext, Factory, settings_for
from ocr_daemon.engines.gemini import engine as gemini
from ocr_daemon.engines.pdftext import PdfTextEngine
from ocr_daemon.errors import EngineUnavailable


def _pdftext(ctx: EngineContext) -> Engine:
    return PdfTextEngine(settings_for(ctx.cfg.engines.pdftext, ctx.watch))


def _auto(ctx: EngineContext) -> Engine:
    return auto.create(ctx, REGISTRY)


REGISTRY: dict[str, Factory] = {
    "pdftext": _pdftext,
    "gemini": gemini.create,
    "tesseract": tesseract.create,
    "auto": _auto,
}


def factories(cfg: Config) -> dict[str, Factory]:
    """The built-in engines and those of the configured plugins (engines.plugins)."""
    try:
        found = plugins.load(cfg.engines.plugins, BUILTIN_ENGINES)
    except ValueError as exc:
        raise EngineUnavailable(str(exc)) from None
    return {**REGISTRY, **cast(dict[str, Factory], found)}


def build(ctx: EngineContext) -> Engine:
    """The engine a watch asks for, with the watch's engine_options applied."""
    try:
        factory = factories(ctx.cfg)[ctx.watch.engine]
    except KeyError:
        raise EngineUnavailable(f"engine {ctx.watch.engine!r} is not available") from None
    return factory(ctx)
