"""Engine `pdftext`: the PDF's own text layer, read with pypdfium2."""

from __future__ import annotations

from ocr_daemon.config import PdftextConfig
from ocr_daemon.engines.base import Extraction, PageRequest, PageText, has_text
from ocr_daemon.errors import NoTextLayer
from ocr_daemon.formats import pdf
from ocr_daemon.formats.sniff import PDF

NO_TEXT = "no text layer: use engine tesseract, gemini or auto"


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
        texts = pdf.page_texts(request.path, [p.index for p in request.pages])
        empty = [n for n, t in zip(numbers, texts, strict=True)
                 if not has_text(t, self.min_chars)]
        if len(empty) == len(numbers):
            raise NoTextLayer(f"{_span(numbers)}: {NO_TEXT}")
        warnings = [f"page {n}: {NO_TEXT}" for n in empty]
        pages = [PageText(n, t, self.name) for n, t in zip(numbers, texts, strict=True)]
        return Extraction(pages, warnings)
