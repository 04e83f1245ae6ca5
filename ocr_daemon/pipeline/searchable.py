"""The pdf output: the original's pages, each with its text layer, written atomically to outbox."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image
from pypdf import PdfReader

from ocr_daemon import atomic, log
from ocr_daemon.engines.tesseract import page_dpi, stated_dpi
from ocr_daemon.errors import CorruptDocument, DocumentError, OcrDaemonError, StorageError
from ocr_daemon.formats import overlay
from ocr_daemon.formats.invisible_text import reading_order_layer
from ocr_daemon.formats.pdfwrite import Layer
from ocr_daemon.formats.sniff import PDF
from ocr_daemon.record.disk import Plan
from ocr_daemon.record.doc import Doc

OWN_LAYER = "pdftext"  # pages read from their own text layer are left as they are


def layer_source(layer_file: Callable[[int], Path], pages: list[dict[str, Any]],
                 warnings: list[str]) -> overlay.LayerFor:
    """Each page's layer: Tesseract's positioned words, saved by its chunk; else the page's
    text in reading order (Gemini gives no positions); none for text-layer pages."""
    by_number = {p["number"]: p for p in pages}

    def layer_for(number: int, width: float, height: float) -> Layer | None:
        page = by_number.get(number)
        if page is None or page.get("missing") or page.get("engine") in (None, OWN_LAYER):
            return None
        saved = layer_file(number)
        if saved.exists():
            return Layer.parse(saved.read_bytes())
        if not page["text"].strip():
            return None
        if page["engine"] == "tesseract":
            warnings.append(f"page {number}: no word positions from tesseract: its text is "
                            "laid over the page in reading order")
        return reading_order_layer(page["text"], width, height)

    return layer_for


def _image_dpi(path: Path) -> Callable[[Image.Image, int], int]:
    def dpi_for(img: Image.Image, index: int) -> int:
        return page_dpi(img.size[0], img.size[1], stated_dpi(path, index))  # as Tesseract read it
    return dpi_for


def assemble(source: Path, mime: str, count: int, pages: list[dict[str, Any]],
             layer_file: Callable[[int], Path], out: BinaryIO) -> tuple[int, list[str]]:
    """The searchable PDF of ``source`` (``count`` pages or frames) into ``out``; how many
    pages got a layer, and a warning per page that could not."""
    warnings: list[str] = []
    layer_for = layer_source(layer_file, pages, warnings)
    if mime == PDF:
        return overlay.overlay(source, out, layer_for, warnings.append), warnings
    return overlay.image_pages(source, out, count, _image_dpi(source), layer_for,
                               warnings.append), warnings


def write_pdf(doc: Doc, plan: Plan, pages: list[dict[str, Any]]) -> tuple[str | None, list[str]]:
    """Write outbox/<stem><pdf_suffix>; its name (None when it cannot be made) and warnings.

    Run again after the original has been archived, it keeps the file an earlier run wrote.
    """
    target = doc.out.pdf(doc.watch.pdf_suffix)
    if not doc.dp.source.exists():
        return (target.name if target.exists() else None), []
    logger = log.get(doc_id=doc.doc_id, watch=doc.watch.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / atomic.temp_name()
    try:
        with open(tmp, "wb") as fh:
            layered, warnings = assemble(doc.dp.source, plan.mime, plan.pages, pages,
                                         doc.dp.layer, fh)
            fh.flush()
            os.fsync(fh.fileno())
        _check(tmp, plan.pages)
        atomic.move(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except DocumentError as exc:  # the text is good: the document completes, without a PDF
        tmp.unlink(missing_ok=True)
        logger.warning("pdf_not_made", code=exc.code, message=exc.message)
        return None, [f"no searchable PDF: {exc.message}"]
    except OcrDaemonError:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("pdf_written", pages=plan.pages, layered=layered, bytes=target.stat().st_size)
    return target.name, warnings


def _check(path: Path, pages: int) -> None:
    """The file we wrote opens and has the original's page count, or it is not delivered."""
    try:
        count = len(PdfReader(path, strict=False).pages)
    except Exception as exc:  # pypdf raises many types on a damaged file
        raise CorruptDocument(f"the PDF written cannot be read back: {exc}") from exc
    if count != pages:
        raise CorruptDocument(f"the PDF written has {count} pages, the original {pages}")
