"""Text the user can trust: hyphens and controls written one way, broken text layers caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocr_daemon.config import PdftextConfig
from ocr_daemon.engines.base import Page, PageRequest
from ocr_daemon.engines.pdftext import PdfTextEngine
from ocr_daemon.errors import NoTextLayer
from ocr_daemon.formats import extractors, pdf, poppler
from ocr_daemon.formats.sniff import PDF
from ocr_daemon.formats.textlayer import BROKEN, NONE, OK, assess, clean
from tests.support.brokenpdf import private_use, write_pdf

from .cer import agreement, cer
from .test_auto import auto_engine

LINES = ["The quick brown fox jumps over", "the lazy dog and keeps running"]
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="no shared corpus here")
needs_poppler = pytest.mark.skipif(not (poppler.available() and poppler.reads_cjk()),
                                   reason="pdftotext with poppler-data not installed")


def request(path: Path, pages: int) -> PageRequest:
    return PageRequest(path, PDF, tuple(Page(n, n - 1) for n in range(1, pages + 1)))


def test_pdfium_hyphen_marker_joins_the_word() -> None:
    assert clean("the com\x02pany launched") == "the company launched"
    assert clean("soft\x02\r\nware is") == "software is"


def test_line_end_hyphen_is_joined_the_same_for_every_extractor() -> None:
    assert clean("pur-\nchase") == "purchase"
    assert clean("pur-\r\nchase") == "purchase"
    # A hyphen before a capital or a digit is a real one: kept, with its line break.
    assert clean("Franco-\nGerman") == "Franco-\nGerman"
    assert clean("Süd-\nÖsterreich, Ver-\nöffentlichung") == "Süd-\nÖsterreich, Veröffentlichung"
    assert clean("pages 10-\n12") == "pages 10-\n12"


def test_no_control_characters_survive_but_newline_and_tab() -> None:
    text = clean("a\x00b\x07c\x1bd\x7fe\x85f\tg\fh\ri")
    assert text == "abcdef\tg\nh\ni"


def test_private_use_text_is_broken() -> None:
    verdict = assess("\ue054\ue068\ue065 \ue071\ue075", 2, 1)
    assert verdict.state == BROKEN
    assert "private-use" in (verdict.reason or "")


def test_glyph_codes_as_controls_are_broken_but_a_few_are_not() -> None:
    assert assess("\x03\x04\x05\x06 \x07\x08 word", 3, 1).state == BROKEN
    assert assess("Plenty of ordinary text\x02with one marker", 3, 1).state == OK


def test_glyph_names_from_pypdf_are_broken() -> None:
    assert assess("/g18/g152/g135/g148 /g3/g145/g136", 5, 1).state == BROKEN


def test_many_drawn_objects_with_almost_no_characters_is_a_missing_tounicode() -> None:
    verdict = assess("a b c", 400, 1)
    assert verdict.state == BROKEN
    assert "ToUnicode" in (verdict.reason or "")


def test_far_fewer_characters_than_pdfium_glyphs_is_broken() -> None:
    assert assess("Overview of the model", 60, 1, glyphs=2000).state == BROKEN
    assert assess("x" * 1900, 60, 1, glyphs=2000).state == OK


def test_an_empty_page_has_no_text_layer() -> None:
    assert assess("  \n ", 0, 1).state == NONE


def test_good_page_is_read_by_pypdfium2(tmp_path: Path) -> None:
    source = write_pdf(tmp_path / "good.pdf", LINES)
    [page] = extractors.read(source, [0], 1)
    assert (page.extractor, page.state, page.text) == ("pypdfium2", OK, "\n".join(LINES))


def test_private_use_text_layer_is_broken_everywhere(tmp_path: Path) -> None:
    source = write_pdf(tmp_path / "pua.pdf", LINES, private_use("".join(LINES)))
    [page] = extractors.read(source, [0], 1)
    assert (page.extractor, page.state, page.text) == (None, BROKEN, "")
    assert "private-use" in (page.reason or "")


def test_pdftext_refuses_a_broken_text_layer_with_the_reason(tmp_path: Path) -> None:
    source = write_pdf(tmp_path / "pua.pdf", LINES, private_use("".join(LINES)))
    with pytest.raises(NoTextLayer, match=r"text layer is broken .*private-use"):
        PdfTextEngine(PdftextConfig()).extract(request(source, 1))


def test_auto_ocrs_a_page_whose_text_layer_is_broken(tmp_path: Path) -> None:
    source = write_pdf(tmp_path / "pua.pdf", LINES, private_use("".join(LINES)))
    [page] = auto_engine(tmp_path).extract(request(source, 1)).pages
    assert (page.engine, page.extractor, page.text_layer) == ("tesseract", None, BROKEN)
    assert "private-use" in (page.text_layer_reason or "")
    assert cer(page.text, " ".join(LINES)) < 0.05


def test_auto_keeps_a_good_text_layer_and_says_so(tmp_path: Path) -> None:
    source = write_pdf(tmp_path / "good.pdf", LINES)
    [page] = auto_engine(tmp_path).extract(request(source, 1)).pages
    assert (page.engine, page.extractor, page.text_layer) == ("pdftext", "pypdfium2", OK)


def reference(relative: str) -> str:
    return (CORPUS / "groundtruth" / "_pdftotext_reference" / (relative + ".pdftotext.txt")
            ).read_text(encoding="utf-8")


@needs_corpus
@needs_poppler
@pytest.mark.parametrize("relative", ["pdfminer_pdfminer.six/samples/jo.pdf",
                                      "pdfminer_pdfminer.six/samples/nonfree/kampo.pdf"])
def test_japanese_cid_fonts_are_read_by_poppler(relative: str) -> None:
    source = CORPUS / "files" / relative
    pages = pdf.count_pages(source, 100)
    result = PdfTextEngine(PdftextConfig()).extract(request(source, pages))
    assert {p.extractor for p in result.pages} == {"pdftotext"}
    assert all(p.text_layer == BROKEN for p in result.pages)  # pdfium's was
    text = "\f".join(p.text for p in result.pages)
    assert agreement(text, reference(relative)) >= 0.85


@needs_corpus
def test_tamreview_pages_with_glyph_codes_are_ocred_not_kept(tmp_path: Path) -> None:
    source = CORPUS / "files" / "mozilla_pdf.js/test/pdfs/TAMReview.pdf"
    result = auto_engine(tmp_path).extract(request(source, 2))
    first, second = result.pages
    assert (first.engine, first.extractor, first.text_layer) == ("pdftext", "pypdfium2", OK)
    assert (second.engine, second.text_layer) == ("tesseract", BROKEN)
    assert "Technology Acceptance Model" in " ".join(second.text.split())
    assert not any(ch < " " and ch not in "\n\t" for p in result.pages for ch in p.text)


@needs_corpus
def test_a_page_with_a_few_unmapped_glyphs_takes_a_clean_extractor() -> None:
    # pdfium maps one Arabic font of this page to stray Greek letters and a control code;
    # pypdf maps it properly: the page passes the check, but the clean reading wins.
    source = CORPUS / "files" / "py-pdf_sample-files/015-arabic/habibi-oneline-cmap.pdf"
    [page] = extractors.read(source, [0], 1)
    assert (page.extractor, page.state) == ("pypdf", OK)
    assert "glyphs without a Unicode mapping" in (page.reason or "")
    assert page.text.split() == ["حَبيبي", "habibi", "حَبيبي"]
