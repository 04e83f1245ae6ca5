"""Engine `tesseract`: real Tesseract on real scans and known pages; failures become our errors."""

from __future__ import annotations

import io
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter

from ocr_daemon import config
from ocr_daemon.config import TesseractConfig
from ocr_daemon.engines.base import EngineContext, Page, PageRequest
from ocr_daemon.engines.registry import REGISTRY
from ocr_daemon.engines.tesseract import TesseractEngine, page_dpi
from ocr_daemon.errors import EngineUnavailable, PageFailed, TransientEngineError
from ocr_daemon.formats import pdf
from ocr_daemon.formats.sniff import JPEG, PDF, PNG, TIFF
from tests.support.pdfs import drawn_page, image_pdf, make_text_pdf, page_text

from .cer import cer
from .conftest import RESOURCES, Env

DPI = 150  # enough for 12-point text; keeps the suite fast


# --- inputs with known text -----------------------------------------------------------------


def known_text(number: int) -> str:
    """Distinct text for page ``number``, wrapped to lines of eight words."""
    head, body = page_text(number, words=24).split("\n")
    words = body.split()
    return "\n".join([head, *(" ".join(words[i:i + 8]) for i in range(0, len(words), 8))])


def merged_pdf(path: Path, parts: list[tuple[Path, int]]) -> Path:
    """A PDF of the given (file, 0-based page) pairs, in order."""
    writer = PdfWriter()
    for source, index in parts:
        writer.add_page(PdfReader(source).pages[index])
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


def request(path: Path, mime: str, pages: int = 1) -> PageRequest:
    return PageRequest(path, mime, tuple(Page(n, n - 1) for n in range(1, pages + 1)))


def engine(**settings: Any) -> TesseractEngine:
    return TesseractEngine(TesseractConfig(**{"dpi": DPI, **settings}))


def missing_language() -> str:
    """A real Tesseract language whose data is not installed here."""
    listed = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True,
                            check=True).stdout.split()
    return next(lang for lang in ("deu", "fra", "spa", "ita", "nld", "por", "pol", "ces")
                if lang not in listed)


# --- reading ----------------------------------------------------------------------------------


def test_real_scan_is_read_within_two_percent_cer() -> None:
    result = engine().extract(request(RESOURCES / "phototest.tif", TIFF))
    [page] = result.pages
    assert (page.number, page.engine) == (1, "tesseract")
    assert cer(page.text, (RESOURCES / "phototest.gt.txt").read_text(encoding="utf-8")) < 0.02
    assert "\f" not in page.text and page.text == page.text.strip()


def test_real_scanned_pdf_is_rendered_and_read() -> None:
    # linn.pdf: a real two-column brochure scan; its reference text is itself OCR output.
    result = engine().extract(request(RESOURCES / "linn.pdf", PDF))
    assert cer(result.pages[0].text, (RESOURCES / "linn.gt.txt").read_text("utf-8")) < 0.05


def test_image_only_pdf_of_a_known_page_is_read(tmp_path: Path) -> None:
    text_pdf = make_text_pdf(tmp_path / "typed.pdf", [known_text(1), known_text(2)])
    scans = [Image.open(io.BytesIO(pdf.render(text_pdf, i, DPI)[0])) for i in (0, 1)]
    scanned = image_pdf(tmp_path / "scanned.pdf", scans)
    assert pdf.page_texts(scanned, [0, 1]) == ["", ""]  # no text layer at all
    result = engine().extract(request(scanned, PDF, pages=2))
    assert [p.number for p in result.pages] == [1, 2]
    assert [cer(p.text, known_text(p.number)) < 0.03 for p in result.pages] == [True, True]


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", PNG), ("JPEG", JPEG), ("TIFF", TIFF)])
def test_png_jpeg_and_tiff_images_are_read(tmp_path: Path, fmt: str, mime: str) -> None:
    path = tmp_path / f"page.{fmt.lower()}"
    drawn_page(known_text(7)).save(path, format=fmt, dpi=(DPI, DPI))
    [page] = engine().extract(request(path, mime)).pages
    assert cer(page.text, known_text(7)) < 0.03


def test_multipage_tiff_frames_become_pages_in_order(tmp_path: Path) -> None:
    frames = [drawn_page(known_text(n)) for n in (1, 2, 3)]
    path = tmp_path / "fax.tif"
    frames[0].save(path, format="TIFF", save_all=True, append_images=frames[1:],
                   dpi=(DPI, DPI), compression="tiff_deflate")
    # Document pages 11 and 12 are frames 2 and 0 of this file: text follows the frame.
    req = PageRequest(path, TIFF, (Page(11, 2), Page(12, 0)))
    pages = engine().extract(req).pages
    assert [(p.number, p.engine) for p in pages] == [(11, "tesseract"), (12, "tesseract")]
    assert cer(pages[0].text, known_text(3)) < 0.03
    assert cer(pages[1].text, known_text(1)) < 0.03


def test_image_without_a_stated_resolution_is_read_as_a_page(tmp_path: Path) -> None:
    # A real typeset page at 200 dpi saved with no resolution: at Tesseract's own 70-dpi
    # fallback its layout analysis cuts lines into bogus columns (CER above 50%).
    source = RESOURCES / "pdflatex-4-pages.pdf"
    path = tmp_path / "nodpi.png"
    Image.open(io.BytesIO(pdf.render(source, 0, 200)[0])).save(path)  # resolution dropped
    assert "dpi" not in Image.open(path).info
    [page] = engine().extract(request(path, PNG)).pages
    assert cer(page.text, pdf.page_texts(source, [0])[0]) < 0.02


def test_resolution_told_to_tesseract_is_believable() -> None:
    assert page_dpi(1700, 2200, None) == 200  # unstated: a page about 11 inches tall
    assert page_dpi(4000, 3000, 72.0) == 364  # a camera's 72 would make a 55-inch page
    assert page_dpi(1017, 529, 72.0) == 72  # believable: kept
    assert page_dpi(640, 480, 200.0) == 200
    assert page_dpi(300, 100, None) == 70  # a small snippet: Tesseract's own default


def test_tesseract_runs_one_thread_on_stdin_with_the_page_resolution(tmp_path: Path) -> None:
    # A stand-in program that reports how it was started (the real one is tested above).
    fake = tmp_path / "fake-tesseract"
    fake.write_text('#!/bin/sh\ncat > "$0.stdin"\necho "OMP=$OMP_THREAD_LIMIT args=$*"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    text_pdf = make_text_pdf(tmp_path / "t.pdf", ["hello"])
    [page] = engine(binary=str(fake), dpi=123, languages="eng+osd").extract(
        request(text_pdf, PDF)).pages
    assert page.text == "OMP=1 args=stdin stdout -l eng+osd --psm 3 --dpi 123"
    assert Path(f"{fake}.stdin").read_bytes().startswith(b"\x89PNG")


# --- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("program", ["missing", "not-executable"])
def test_missing_tesseract_program_is_engine_unavailable_with_install_hint(
        tmp_path: Path, program: str) -> None:
    binary = tmp_path / program
    if program == "not-executable":
        binary.write_text("not a program")
    with pytest.raises(EngineUnavailable) as info:
        engine(binary=str(binary)).extract(request(RESOURCES / "phototest.tif", TIFF))
    assert "apt-get install tesseract-ocr" in info.value.hint
    assert not info.value.retryable and str(binary) in info.value.message


def test_missing_language_pack_names_the_debian_package(tmp_path: Path) -> None:
    lang = missing_language()
    with pytest.raises(EngineUnavailable) as info:
        engine(languages=f"eng+{lang}").extract(request(RESOURCES / "phototest.tif", TIFF))
    assert lang in info.value.message
    assert f"apt-get install tesseract-ocr-{lang}" in info.value.hint


def test_engine_options_of_the_watch_reach_tesseract(tmp_path: Path) -> None:
    lang = missing_language()
    cfg = config.parse({"watches": [{"name": "w", "root": str(tmp_path / "w"),
                                     "engine": "tesseract",
                                     "engine_options": {"languages": lang}}]}, tmp_path)
    built = REGISTRY["tesseract"](EngineContext(cfg, cfg.watches[0]))
    with pytest.raises(EngineUnavailable, match=lang):
        built.extract(request(RESOURCES / "phototest.tif", TIFF))


def test_timeout_is_a_retryable_engine_error() -> None:
    started = time.monotonic()
    with pytest.raises(TransientEngineError) as info:
        engine(dpi=300, timeout=0.2).extract(request(RESOURCES / "linn.pdf", PDF))
    assert info.value.retryable and "longer than 0.2s" in info.value.message
    assert time.monotonic() - started < 5  # killed, not waited for


def test_image_tesseract_cannot_take_fails_the_page(tmp_path: Path) -> None:
    path = tmp_path / "strip.png"  # Pillow reads it; Tesseract refuses widths over 32767
    Image.new("1", (40000, 60), 1).save(path)
    with pytest.raises(PageFailed) as info:
        engine().extract(request(path, PNG))
    assert "page 1" in info.value.message and "too large" in info.value.message.lower()


# --- end to end -------------------------------------------------------------------------------


def test_daemon_with_tesseract_turns_a_scanned_pdf_and_an_image_into_text(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch={"engine": "tesseract"}, engines={"tesseract": {"dpi": DPI}})
    env.run_daemon()
    typed = make_text_pdf(tmp_path / "typed.pdf", [known_text(4)])
    image_pdf(tmp_path / "scan.pdf", [Image.open(io.BytesIO(pdf.render(typed, 0, DPI)[0]))])
    env.drop(tmp_path / "scan.pdf")
    env.drop(RESOURCES / "phototest.tif", name="photo.tif")
    scan = env.wait_result("scan", timeout=60)
    photo = env.wait_result("photo", timeout=60)
    assert [(p["number"], p["engine"]) for p in scan["pages"]] == [(1, "tesseract")]
    assert cer((env.outbox / "scan.txt").read_text("utf-8"), known_text(4)) < 0.03
    assert photo["source"]["mime"] == TIFF and photo["pages"][0]["engine"] == "tesseract"
    truth = (RESOURCES / "phototest.gt.txt").read_text("utf-8")
    assert cer((env.outbox / "photo.txt").read_text("utf-8"), truth) < 0.02
