"""The PDF adapter: hostile page sizes, encryption, damage become our errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfWriter

from ocr_daemon.errors import CorruptDocument, EncryptedDocument
from ocr_daemon.formats import pdf

from .conftest import RESOURCES


def test_render_of_a_huge_page_is_capped_in_pixels_and_reports_the_resolution_used(
        tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=14400, height=14400)  # 200 inches square: 3.6 Gpx at 300 dpi
    path = tmp_path / "poster.pdf"
    with open(path, "wb") as fh:
        writer.write(fh)
    png, dpi = pdf.render(path, 0, 300)
    width, height = Image.open(io.BytesIO(png)).size
    assert dpi < 300
    assert width * height <= pdf.RENDER_MAX_PIXELS
    assert abs(width - 14400 * dpi / 72) <= 1


def test_render_of_a_normal_page_keeps_the_asked_resolution() -> None:
    png, dpi = pdf.render(RESOURCES / "pdflatex-4-pages.pdf", 0, 150)
    image = Image.open(io.BytesIO(png))
    assert dpi == 150 and image.info["dpi"][0] == pytest.approx(150, abs=1)


def test_password_protected_and_damaged_pdfs_raise_our_errors(tmp_path: Path) -> None:
    with pytest.raises(EncryptedDocument):
        pdf.count_pages(RESOURCES / "r4-aes-user-password.pdf", 100)
    garbage = tmp_path / "garbage.pdf"
    garbage.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n")
    with pytest.raises(CorruptDocument):
        pdf.count_pages(garbage, 100)
    assert pdf.count_pages(RESOURCES / "r5-empty-password.pdf", 100) == 1
    # PDFium counts the pages of a file whose cross-reference table is damaged by rebuilding
    # it (pypdf refused this one), and reads its text; the intake still calls the file
    # truncated, as it has no end marker (test_end_to_end).
    assert pdf.count_pages(RESOURCES / "qpdf-bad2.pdf", 100) == 1
    assert pdf.page_texts(RESOURCES / "qpdf-bad2.pdf", [0]) == ["Potato"]


def test_text_extraction_from_many_threads_at_once_is_correct_and_does_not_hang(
        tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor, wait

    from tests.support.pdfs import make_text_pdf, page_text

    files = [make_text_pdf(tmp_path / f"t{n}.pdf", [page_text(n * 10 + k) for k in range(10)])
             for n in range(8)]
    expected = {f: [page_text(n * 10 + k) for k in range(10)] for n, f in enumerate(files)}
    with ThreadPoolExecutor(8) as pool:  # as a threads worker pool runs chunks
        futures = {pool.submit(pdf.page_texts, f, list(range(10))): f for f in files * 25}
        done, pending = wait(futures, timeout=60)
        assert not pending, "pdfium calls from several threads hung"
        for future in done:
            assert future.result() == expected[futures[future]]


def test_a_chunk_sub_pdf_holds_exactly_its_pages_of_the_original(tmp_path: Path) -> None:
    """What a chunk of an engine that needs bytes (gemini) sends: made by the chunk task from
    the original with PDFium's page import (about 15 ms for 10 pages of a 352-page book,
    where pypdf took 840 ms: README, Performance)."""
    source = RESOURCES / "pdflatex-4-pages.pdf"
    sub = tmp_path / "sub.pdf"
    sub.write_bytes(pdf.pages_pdf(source, [3, 1]))
    assert pdf.count_pages(sub, 10) == 2
    assert pdf.page_texts(sub, [0, 1]) == pdf.page_texts(source, [3, 1])
    assert pdf.pages_pdf(source, [0, 1, 2, 3]) == source.read_bytes()  # all: no copy made
