"""Engine `auto`: the text layer where a page has one, OCR (here Tesseract) where it has none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ocr_daemon import config
from ocr_daemon.config import Config
from ocr_daemon.engines.auto import gemini_configured, ocr_engine_name
from ocr_daemon.engines.base import Engine, EngineContext, Page, PageRequest, TextFirst
from ocr_daemon.engines.registry import REGISTRY
from ocr_daemon.errors import EngineUnavailable
from ocr_daemon.formats.sniff import PDF, PNG
from tests.support.pdfs import drawn_page, image_pdf, make_text_pdf

from .cer import cer
from .conftest import Env
from .test_tesseract import DPI, known_text, merged_pdf

TYPED = {1: "Typed page one: the quick brown fox.", 3: "Typed page three, with a text layer."}


# Tesseract at test speed; no Gemini key, whatever this machine's environment holds.
ENGINES: dict[str, Any] = {"tesseract": {"dpi": DPI}, "gemini": {"api_key_env": "OCRD_NO_KEY"}}


def make_config(tmp_path: Path, **engines: Any) -> Config:
    return config.parse({"watches": [{"name": "w", "root": str(tmp_path / "w"),
                                      "engine": "auto"}],
                         "engines": {**ENGINES, **engines}}, tmp_path)


def auto_engine(tmp_path: Path, **engines: Any) -> Engine:
    cfg = make_config(tmp_path, **engines)
    return REGISTRY["auto"](EngineContext(cfg, cfg.watches[0]))


def mixed_pdf(tmp_path: Path) -> Path:
    """Pages 1 and 3 typed (text layer), pages 2 and 4 scanned (images only)."""
    typed = make_text_pdf(tmp_path / "typed.pdf", [TYPED[1], TYPED[3]])
    scans = image_pdf(tmp_path / "scans.pdf", [drawn_page(known_text(2)),
                                               drawn_page(known_text(4))])
    return merged_pdf(tmp_path / "mixed.pdf", [(typed, 0), (scans, 0), (typed, 1), (scans, 1)])


def whole(path: Path, mime: str, pages: int) -> PageRequest:
    return PageRequest(path, mime, tuple(Page(n, n - 1) for n in range(1, pages + 1)))


def test_mixed_pdf_takes_the_text_layer_or_ocr_page_by_page(tmp_path: Path) -> None:
    source = mixed_pdf(tmp_path)
    result = auto_engine(tmp_path).extract(whole(source, PDF, 4))
    assert [(p.number, p.engine) for p in result.pages] == [
        (1, "pdftext"), (2, "tesseract"), (3, "pdftext"), (4, "tesseract")]
    assert [result.pages[0].text, result.pages[2].text] == [TYPED[1], TYPED[3]]
    assert cer(result.pages[1].text, known_text(2)) < 0.03
    assert cer(result.pages[3].text, known_text(4)) < 0.03


def test_chunk_pages_keep_their_document_numbers(tmp_path: Path) -> None:
    source = mixed_pdf(tmp_path)
    # A chunk holding document pages 7 and 8 as its pages 0 and 1 (a scan, then typed).
    result = auto_engine(tmp_path).extract(PageRequest(source, PDF, (Page(7, 1), Page(8, 2))))
    assert [(p.number, p.engine) for p in result.pages] == [(7, "tesseract"), (8, "pdftext")]
    assert cer(result.pages[0].text, known_text(2)) < 0.03
    assert result.pages[1].text == TYPED[3]


def test_page_with_fewer_characters_than_min_chars_is_ocred(tmp_path: Path) -> None:
    source = make_text_pdf(tmp_path / "short.pdf", ["Only a short line here", TYPED[1]])
    result = auto_engine(tmp_path, pdftext={"min_chars": 25}).extract(whole(source, PDF, 2))
    assert [p.engine for p in result.pages] == ["tesseract", "pdftext"]
    assert cer(result.pages[0].text, "Only a short line here") < 0.1  # its glyphs, read


def test_image_goes_straight_to_ocr(tmp_path: Path) -> None:
    path = tmp_path / "page.png"
    drawn_page(known_text(5)).save(path, dpi=(DPI, DPI))
    [page] = auto_engine(tmp_path).extract(whole(path, PNG, 1)).pages
    assert page.engine == "tesseract" and cer(page.text, known_text(5)) < 0.03


def test_text_pdf_never_starts_ocr(tmp_path: Path) -> None:
    # Tesseract missing: typed pages still come out; a scan fails with the install hint.
    engine = auto_engine(tmp_path, tesseract={"binary": str(tmp_path / "none")})
    typed = make_text_pdf(tmp_path / "typed.pdf", [TYPED[1], TYPED[3]])
    assert [p.engine for p in engine.extract(whole(typed, PDF, 2)).pages] == ["pdftext"] * 2
    with pytest.raises(EngineUnavailable) as info:
        engine.extract(whole(mixed_pdf(tmp_path), PDF, 4))
    assert "apt-get install tesseract-ocr" in info.value.hint


def test_ocr_is_gemini_only_when_an_api_key_is_configured(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, gemini={"api_key_env": "MY_KEY"})
    ctx = EngineContext(cfg, cfg.watches[0])
    both = frozenset({"gemini", "tesseract"})
    assert ocr_engine_name(ctx, {}, both) == "tesseract"
    assert ocr_engine_name(ctx, {"MY_KEY": " "}, both) == "tesseract"
    assert ocr_engine_name(ctx, {"GEMINI_API_KEY": "k"}, both) == "tesseract"  # not the env
    assert ocr_engine_name(ctx, {"MY_KEY": "k"}, both) == "gemini"
    assert ocr_engine_name(ctx, {"MY_KEY": "k"}, frozenset({"tesseract"})) == "tesseract"
    key_file = tmp_path / "key"
    with_file = make_config(tmp_path, gemini={"api_key_file": str(key_file)}).engines.gemini
    assert not gemini_configured(with_file, {})
    key_file.write_text("k\n")
    assert gemini_configured(with_file, {})


def test_daemon_with_auto_records_the_engine_of_every_page_and_fans_out_only_the_scans(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    # One OCR page a chunk: the two scans fan out; the typed pages, read by the document
    # task in its text pass, are one chunk of their own.
    env = make_env(watch={"engine": "auto", "chunk_pages": 1, "chunk_threshold_pages": 1,
                          "text_chunk_pages": 1000}, engines=ENGINES)
    env.run_daemon()
    env.drop(mixed_pdf(tmp_path))
    result = env.wait_result("mixed", timeout=60)
    assert result["engine"] == "auto"
    assert [(p["number"], p["engine"]) for p in result["pages"]] == [
        (1, "pdftext"), (2, "tesseract"), (3, "pdftext"), (4, "tesseract")]
    assert [c["pages"] for c in result["chunks"]] == [[1, 3], [2, 2], [4, 4]]
    assert [p["text_layer"] for p in result["pages"]] == ["ok", "none", "ok", "none"]
    texts = (env.outbox / "mixed.txt").read_text("utf-8").split("\f")
    assert texts[0] == TYPED[1] and texts[2] == TYPED[3]
    assert cer(texts[1], known_text(2)) < 0.03 and cer(texts[3], known_text(4)) < 0.03


def test_a_page_that_draws_nothing_is_not_sent_to_ocr(tmp_path: Path) -> None:
    typed = make_text_pdf(tmp_path / "typed.pdf", [TYPED[1], ""])  # page 2: nothing drawn
    scans = image_pdf(tmp_path / "scans.pdf", [drawn_page(known_text(3))])
    source = merged_pdf(tmp_path / "book.pdf", [(typed, 0), (typed, 1), (scans, 0)])
    engine = auto_engine(tmp_path)
    assert isinstance(engine, TextFirst)
    first = engine.text_pass(whole(source, PDF, 3))
    assert [(p.number, p.text, p.text_layer) for p in first.read.pages] == [
        (1, TYPED[1], "ok"), (2, "", "none")]
    assert first.read.pages[1].text_layer_reason == "the page draws nothing"
    assert [p.number for p in first.ocr] == [3]  # the scan: an image, not nothing
    result = engine.extract(whole(source, PDF, 3))
    assert [(p.number, p.engine) for p in result.pages] == [
        (1, "pdftext"), (2, "pdftext"), (3, "tesseract")]
