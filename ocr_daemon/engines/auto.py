"""Engine `auto`: a PDF page's own text layer where it passes the quality check, else OCR."""

from __future__ import annotations

import os
from collections.abc import Mapping
from itertools import compress

from ocr_daemon import log
from ocr_daemon.config import GeminiConfig
from ocr_daemon.engines.base import (
    Engine,
    EngineContext,
    Extraction,
    Factory,
    Page,
    PageRequest,
    PageText,
    TextPass,
    settings_for,
)
from ocr_daemon.formats import extractors, pdf
from ocr_daemon.formats.extractors import LayerPage
from ocr_daemon.formats.sniff import PDF
from ocr_daemon.formats.textlayer import NONE


def gemini_configured(settings: GeminiConfig, environ: Mapping[str, str]) -> bool:
    """True when an API key is at hand: its environment variable is set, or its file exists."""
    if environ.get(settings.api_key_env, "").strip():
        return True
    return settings.api_key_file is not None and settings.api_key_file.is_file()


def ocr_engine_name(ctx: EngineContext, environ: Mapping[str, str],
                    registered: set[str] | frozenset[str]) -> str:
    """gemini when a key is configured (and the engine is registered), else tesseract."""
    if "gemini" in registered and gemini_configured(ctx.cfg.engines.gemini, environ):
        return "gemini"
    return "tesseract"


BLANK = "the page draws nothing"


class AutoEngine:
    name = "auto"

    def __init__(self, ctx: EngineContext, min_chars: int,
                 registry: Mapping[str, Factory]) -> None:
        self.ctx = ctx
        self.registry = registry
        self.min_chars = min_chars
        self._ocr: Engine | None = None

    @property
    def ocr(self) -> Engine:
        """The OCR engine, built on first need: a text-only PDF never needs one."""
        if self._ocr is None:
            name = ocr_engine_name(self.ctx, os.environ, frozenset(self.registry))
            self._ocr = self.registry[name](self.ctx)
            log.get(engine=self.name, watch=self.ctx.watch.name).info("auto_ocr_engine",
                                                                      ocr=name)
        return self._ocr

    def text_pass(self, request: PageRequest) -> TextPass:
        layers = extractors.read(request.path, [p.index for p in request.pages],
                                 self.min_chars)
        read = [PageText(p.number, la.text, "pdftext", extractor=la.extractor,
                         text_layer=la.state, text_layer_reason=la.reason)
                for p, la in zip(request.pages, layers, strict=True) if la.extractor is not None]
        unread = [(p, la) for p, la in zip(request.pages, layers, strict=True)
                  if la.extractor is None]
        # A page that draws nothing (a book's blank verso) has nothing to OCR: 0.5 to 1 s of
        # Tesseract each, 12 of thinkpython2.pdf's 264 pages.
        empty = [p.index for p, la in unread if la.state == NONE]
        blank = set(compress(empty, pdf.blank_pages(request.path, empty))) if empty else set()
        ocr: list[tuple[Page, LayerPage]] = []
        for page, layer in unread:
            if page.index in blank:
                read.append(PageText(page.number, "", "pdftext", extractor=extractors.FIRST,
                                     text_layer=NONE, text_layer_reason=BLANK))
            else:
                ocr.append((page, layer))
        order = {p.number: i for i, p in enumerate(request.pages)}
        read.sort(key=lambda page: order[page.number])
        return TextPass(Extraction(read), tuple(p for p, _ in ocr),
                        {p.number: (la.state, la.reason) for p, la in ocr})

    def extract(self, request: PageRequest) -> Extraction:
        if request.mime != PDF:  # an image has no text layer
            return self.ocr.extract(request)
        first = self.text_pass(request)
        if not first.ocr:
            return first.read
        ocred = self.ocr.extract(PageRequest(request.path, request.mime, first.ocr,
                                             request.layers))
        for page in ocred.pages:  # why OCR read it: no text layer, or a broken one
            page.text_layer, page.text_layer_reason = first.why[page.number]
        by_number = {**{p.number: p for p in first.read.pages},
                     **{p.number: p for p in ocred.pages}}
        return Extraction([by_number[p.number] for p in request.pages], ocred.warnings,
                          ocred.layers, ocred.usage)


def create(ctx: EngineContext, registry: Mapping[str, Factory]) -> Engine:
    """`auto` over the engines of ``registry`` (the registry passes itself)."""
    return AutoEngine(ctx, settings_for(ctx.cfg.engines.pdftext, ctx.watch).min_chars, registry)
