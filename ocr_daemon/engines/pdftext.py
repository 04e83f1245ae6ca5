"""Engine `pdftext`: the PDF's own text layer, from the first extractor whose text passes."""

from __future__ import annotations

from ocr_daemon.config import PdftextConfig
from ocr_daemon.engines.base import Extraction, PageRequest, PageText
from ocr_daemon.errors import NoTextLayer
from ocr_daemon.formats import extractors
from ocr_daemon.formats.sniff import PDF
from ocr_daemon.formats.textlayer import BROKEN

NO_TEXT = "no text layer: use engine tesseract, gemini or auto"
BROKEN_TEXT = "the text layer is broken ({}): use engine tesseract, gemini or auto"


def _span(numbers: list[int]) -> str:
    return f"page {numbers[0]}" if len(numbers) == 1 else f"pages {numbers[0]}-{numbers[-1]}"


class PdfTextEngine:
    name = "pdftext"

    def __init__(self, settings: PdftextConfig) -> None:
        self.min_chars = settings.min_chars

    def extract(self, request: PageRequest) -> Extraction:
        numbers = [p.number for p in request.pages]
        if request.mime != PDF:
            raise NoTextLayer(f"{_span(numbers)}: an image has {NO_TEXT}")
        layers = extractors.read(request.path, [p.index for p in request.pages], self.min_chars)
        if all(layer.extractor is None for layer in layers):
            broken = [layer for layer in layers if layer.state == BROKEN]
            raise NoTextLayer(f"{_span(numbers)}: "
                              + (BROKEN_TEXT.format(broken[0].reason) if broken else NO_TEXT))
        warnings = []
        for n, layer in zip(numbers, layers, strict=True):
            if layer.extractor is None:
                warnings.append(f"page {n}: " + (BROKEN_TEXT.format(layer.reason)
                                                 if layer.state == BROKEN else NO_TEXT))
        return Extraction([_page(n, la) for n, la in zip(numbers, layers, strict=True)],
                          warnings)


def _page(number: int, layer: extractors.LayerPage) -> PageText:
    return PageText(number, layer.text, PdfTextEngine.name, extractor=layer.extractor,
                    text_layer=layer.state,
                    text_layer_reason=layer.reason)
