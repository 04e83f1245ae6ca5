"""Searchable PDF output: real scans and PDFs come back as the same pages with a text layer."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat
from pypdf import PdfReader, PdfWriter

from ocr_daemon import config
from ocr_daemon.config import TesseractConfig
from ocr_daemon.engines.base import Page, PageRequest
from ocr_daemon.engines.tesseract import TesseractEngine
from ocr_daemon.errors import ConfigError, EncryptedDocument
from ocr_daemon.formats import overlay
from ocr_daemon.formats.invisible_text import reading_order_layer
from ocr_daemon.formats.pdfwrite import Layer
from ocr_daemon.formats.sniff import TIFF

from .cer import cer
from .conftest import RESOURCES, Env
from .fake_gemini import running

DPI = 150  # what Tesseract reads at here: enough for these scans, and quick
TOOLS = ("pdftotext", "pdftoppm", "qpdf")
pytestmark = pytest.mark.skipif(
    any(subprocess.run(["which", t], capture_output=True).returncode for t in TOOLS),
    reason="poppler-utils and qpdf are needed (scripts/setup --test installs them)")


# --- helpers: poppler and qpdf look at our files as a viewer would ---------------------------


def qpdf_check(path: Path) -> None:
    done = subprocess.run(["qpdf", "--check", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No syntax or stream encoding errors" in done.stdout


def pdftotext(path: Path, page: int | None = None) -> str:
    """The text a viewer's search finds, in the order it is drawn (-raw: a two-column page's
    text comes out in the engine's reading order, not re-sorted by poppler's layout)."""
    pages = ["-f", str(page), "-l", str(page)] if page else []
    return subprocess.run(["pdftotext", "-raw", *pages, str(path), "-"], capture_output=True,
                          text=True, check=True).stdout


def render(path: Path, page: int, tmp: Path, dpi: int = 100) -> Image.Image:
    out = tmp / f"{path.stem}-{page}-{dpi}"
    subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-f", str(page), "-l", str(page),
                    "-singlefile", str(path), str(out)], check=True, capture_output=True)
    with Image.open(out.with_suffix(".pgm")) as img:
        return img.copy()


def assert_looks_the_same(ours: Path, original: Path, tmp: Path) -> None:
    """Same page count and sizes, and every page rendered at 100 dpi equal to the original's."""
    mine, theirs = PdfReader(ours).pages, PdfReader(original).pages
    assert len(mine) == len(theirs)
    for number, (a, b) in enumerate(zip(mine, theirs, strict=True), start=1):
        assert (list(a.mediabox), a.rotation) == (list(b.mediabox), b.rotation)
        diff = ImageChops.difference(render(ours, number, tmp), render(original, number, tmp))
        assert max(ImageStat.Stat(diff).mean) < 0.05, f"page {number} looks different"


def ink_in(img: Image.Image, box: tuple[float, float, float, float]) -> float:
    """Share of dark pixels inside ``box`` (pixels of ``img``)."""
    crop = img.crop(tuple(round(v) for v in box)).point(lambda v: 255 if v < 128 else 0)
    return ImageStat.Stat(crop).mean[0] / 255 if crop.width and crop.height else 0.0


def word_boxes(path: Path, page: int) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Words of our text layer with their boxes in points from the top left (pdftotext -bbox)."""
    html = subprocess.run(["pdftotext", "-bbox", "-f", str(page), "-l", str(page), str(path),
                           "-"], capture_output=True, text=True, check=True).stdout
    words = []
    for line in html.splitlines():
        if "<word " not in line:
            continue
        attrs = dict(part.split("=") for part in line.split(">")[0].split()[1:])
        x0, y0, x1, y1 = (float(attrs[k].strip('"')) for k in ("xMin", "yMin", "xMax", "yMax"))
        words.append((line.split(">")[1].split("<")[0], (x0, y0, x1, y1)))
    return words


def mixed_pdf(path: Path) -> Path:
    """A real scan, a real scan with /Rotate 90, then a page with its own text layer."""
    writer = PdfWriter()
    for source, index in ((RESOURCES / "linn.pdf", 0), (RESOURCES / "rotated_skew.pdf", 0),
                          (RESOURCES / "pdflatex-4-pages.pdf", 0)):
        writer.add_page(PdfReader(source).pages[index])
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


def two_frame_tiff(path: Path) -> Path:
    """A multi-page TIFF: the real 1-bit 200-dpi phototest scan, then it larger, in gray."""
    with Image.open(RESOURCES / "phototest.tif") as photo:
        first = photo.copy()
    second = first.convert("L").resize((first.width * 3 // 2, first.height * 3 // 2))
    first.save(path, save_all=True, append_images=[second], dpi=(200, 200),
               compression="tiff_deflate")
    return path


# --- the daemon: scans and images in, searchable PDFs out -----------------------------------


def test_scanned_pdf_and_multipage_tiff_come_back_as_searchable_pdfs_that_look_the_same(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch={"engine": "auto", "outputs": ["text", "json", "pdf"],
                          "chunk_pages": 1, "chunk_threshold_pages": 1, "pdf_max_pages": 3},
                   engines={"tesseract": {"dpi": DPI}})
    env.run_daemon()
    env.drop(mixed_pdf(tmp_path / "mixed.pdf"))
    env.drop(two_frame_tiff(tmp_path / "frames.tif"))
    env.drop(RESOURCES / "pdflatex-4-pages.pdf", name="long.pdf")  # 4 pages > pdf_max_pages
    mixed = env.wait_result("mixed", timeout=240)
    frames = env.wait_result("frames", timeout=240)
    error = env.wait_error("long", timeout=60)

    # The 3-page PDF went in three chunks; the PDF joins them in page order.
    assert len(mixed["chunks"]) == 3
    assert [(p["number"], p["engine"]) for p in mixed["pages"]] == [
        (1, "tesseract"), (2, "tesseract"), (3, "pdftext")]
    assert mixed["pdf_file"] == "mixed.pdf" and mixed["warnings"] == []
    ours = env.outbox / "mixed.pdf"
    qpdf_check(ours)
    assert_looks_the_same(ours, tmp_path / "mixed.pdf", tmp_path)
    texts = (env.outbox / "mixed.txt").read_text("utf-8").split("\f")
    for number in (1, 2):  # OCR pages: the layer is the text of the .txt
        assert cer(pdftotext(ours, number), texts[number - 1]) <= 0.01
    assert pdftotext(ours, 3) == pdftotext(tmp_path / "mixed.pdf", 3)  # left as it was

    # The rotated scan: its words are laid where their ink is, not turned away from it.
    page = render(ours, 2, tmp_path)
    scale = 100 / 72
    words = [(t, tuple(v * scale for v in box)) for t, box in word_boxes(ours, 2)
             if len(t) >= 4 and t.isalpha()]
    assert len(words) >= 20
    inked = [ink_in(page, box) > 0.04 for _, box in words]
    assert sum(inked) >= 0.9 * len(words)
    turned = [ink_in(page, (page.width - b[2], page.height - b[3], page.width - b[0],
                            page.height - b[1])) > 0.04 for _, b in words]
    assert sum(turned) < sum(inked)  # the check can tell a misplaced layer

    # The TIFF: one page per frame at the frame's own resolution, the image unchanged.
    assert frames["source"]["mime"] == TIFF and frames["pdf_file"] == "frames.pdf"
    tiff_pdf = env.outbox / "frames.pdf"
    qpdf_check(tiff_pdf)
    pages = PdfReader(tiff_pdf).pages
    assert len(pages) == 2
    with Image.open(tmp_path / "frames.tif") as tif:
        for index, page_obj in enumerate(pages):
            tif.seek(index)
            dpi = 200
            size = [float(v) for v in page_obj.mediabox[2:]]
            assert size == pytest.approx([tif.width * 72 / dpi, tif.height * 72 / dpi], abs=0.01)
            (embedded,) = page_obj.images  # the frame's pixels, losslessly
            assert embedded.image is not None and embedded.image.mode == tif.mode
            assert ImageChops.difference(embedded.image.convert("L"),
                                         tif.convert("L")).getbbox() is None
    texts = (env.outbox / "frames.txt").read_text("utf-8").split("\f")
    for number in (1, 2):
        assert cer(pdftotext(tiff_pdf, number), texts[number - 1]) <= 0.01

    # Above pdf_max_pages: a clear failure, the original kept.
    assert error["error"]["code"] == "too_large"
    assert "pdf_max_pages (3)" in error["error"]["message"]
    assert (env.failed / "long.pdf").exists()


def test_default_outputs_make_no_pdf_and_no_layers(make_env: Callable[..., Env],
                                                   tmp_path: Path) -> None:
    env = make_env(watch={"engine": "tesseract"}, engines={"tesseract": {"dpi": DPI}})
    assert env.cfg.watches[0].outputs == ["text", "json"]
    env.run_daemon()
    env.drop(RESOURCES / "phototest.tif", name="photo.tif")
    result = env.wait_result("photo", timeout=120)
    assert "pdf_file" not in result and result["text_file"] == "photo.txt"
    assert sorted(p.name for p in env.outbox.iterdir()) == [
        "photo.json", "photo.progress.json", "photo.txt"]


# --- the engine: one Tesseract run gives the text and its layer ------------------------------


def test_tesseract_layer_comes_from_the_same_run_as_the_text() -> None:
    tess = TesseractEngine(TesseractConfig(dpi=DPI))
    req = PageRequest(RESOURCES / "phototest.tif", TIFF, (Page(1, 0),))
    plain = tess.extract(req)
    both = tess.extract(PageRequest(req.path, req.mime, req.pages, layers=True))
    assert plain.layers == {} and both.warnings == []
    assert both.pages[0].text == plain.pages[0].text  # asking for the layer changes no text
    layer = Layer.parse(both.layers[1])
    assert (layer.width, layer.height) == pytest.approx((640 * 72 / 200, 480 * 72 / 200))
    assert b"3 Tr" in layer.content  # invisible text


# --- the layers on their own: Gemini's text, a damaged layer ----------------------------------


def test_text_without_positions_is_searchable_and_invisible(tmp_path: Path) -> None:
    text = ("The LinnSequencer\n32 Track MIDI Sequence Recorder\n"
            "Ünïcode: naïve café – Ωmega 東京\n") * 3
    out = tmp_path / "gemini.pdf"
    warnings: list[str] = []
    with open(out, "wb") as fh:
        layered = overlay.overlay(RESOURCES / "rotated_skew.pdf", fh,
                                  lambda n, w, h: reading_order_layer(text, w, h),
                                  warnings.append)
    assert (layered, warnings) == (1, [])
    qpdf_check(out)
    assert_looks_the_same(out, RESOURCES / "rotated_skew.pdf", tmp_path)
    assert cer(pdftotext(out), text) <= 0.01
    boxes = [box for _, box in word_boxes(out, 1)]
    width, height = 612, 792  # shown upright: /Rotate 90 of a 792 x 612 page
    assert all(0 <= b[0] < b[2] <= width and 0 <= b[1] < b[3] <= height for b in boxes)
    assert min(b[1] for b in boxes) < height / 4  # the first line near the top


def test_a_page_whose_layer_cannot_be_made_keeps_its_original_and_is_named(
        tmp_path: Path) -> None:
    source = mixed_pdf(tmp_path / "mixed.pdf")
    good = reading_order_layer("page two words", 612, 792)

    def layer_for(number: int, width: float, height: float) -> Layer | None:
        if number == 1:
            return Layer.parse(b"%PDF-1.7 this is not a PDF page")
        return good if number == 2 else None

    warnings: list[str] = []
    out = tmp_path / "out.pdf"
    with open(out, "wb") as fh:
        assert overlay.overlay(source, fh, layer_for, warnings.append) == 1
    assert len(warnings) == 1 and warnings[0].startswith("page 1: no text layer")
    qpdf_check(out)
    assert_looks_the_same(out, source, tmp_path)
    assert pdftotext(out, 1).strip() == ""
    assert "page two words" in pdftotext(out, 2)


def test_encrypted_original_gets_no_layer_written_into_it(tmp_path: Path) -> None:
    with open(tmp_path / "out.pdf", "wb") as fh, pytest.raises(EncryptedDocument):
        overlay.overlay(RESOURCES / "r5-empty-password.pdf", fh,
                        lambda n, w, h: reading_order_layer("x", w, h), lambda m: None)


# --- configuration ------------------------------------------------------------------------------


def test_outputs_must_keep_the_result_json_and_name_known_outputs(tmp_path: Path) -> None:
    def load(**watch: object) -> config.Config:
        return config.parse({"watches": [{"name": "w", "root": str(tmp_path / "w"), **watch}]},
                            tmp_path)

    assert load(outputs=["text", "json", "pdf"]).watches[0].pdf_output
    assert not load().watches[0].pdf_output
    with pytest.raises(ConfigError, match=r"watches\[0\]\.outputs: must include json"):
        load(outputs=["text", "pdf"])
    with pytest.raises(ConfigError,
                       match=r"outputs\[1\]: Input should be 'text', 'json' or 'pdf'"):
        load(outputs=["json", "docx"])
    with pytest.raises(ConfigError, match=r"watches\[0\]\.pdf_suffix"):
        load(pdf_suffix="/../x.pdf")
    assert load(pdf_suffix=".ocr.pdf").watches[0].pdf_suffix == ".ocr.pdf"


# --- many real PDFs: the update never changes how a page looks ---------------------------------

ODD_PDFS = [
    "indirect-rotation.pdf",  # /Rotate through an indirect object
    "with_update_sections.pdf",  # several updates and xref streams already
    "habibi-rotated.pdf",  # rotated pages, Arabic text
    "formxobject.pdf",  # the page drawn by a Form XObject
    "inline-image.pdf",  # an inline image in the content stream
    "pdflatex-4-pages.pdf",  # object streams, an xref stream
]


@pytest.mark.parametrize("name", ODD_PDFS)
def test_update_over_real_pdfs_keeps_every_page_as_it_looks(name: str, tmp_path: Path) -> None:
    source = RESOURCES / name
    out = tmp_path / "out.pdf"
    warnings: list[str] = []
    with open(out, "wb") as fh:
        layered = overlay.overlay(source, fh,
                                  lambda n, w, h: reading_order_layer(f"zebra{n} quagga", w, h),
                                  warnings.append)
    assert warnings == [] and layered == len(PdfReader(source).pages)
    before = subprocess.run(["qpdf", "--check", str(source)], capture_output=True).returncode
    assert subprocess.run(["qpdf", "--check", str(out)], capture_output=True).returncode <= before
    for number in range(1, min(layered, 3) + 1):
        diff = ImageChops.difference(render(out, number, tmp_path, dpi=50),
                                     render(source, number, tmp_path, dpi=50))
        assert diff.getbbox() is None, f"page {number} looks different"
        assert f"zebra{number}" in pdftotext(out, number)


def test_gemini_page_comes_back_with_its_text_searchable_over_the_image(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    said = "Invoice 4711\nTotal due: 1,234.56 EUR\nPayable within 30 days"
    with running(image_text=said) as fake:
        env = make_env(watch={"engine": "gemini", "outputs": ["json", "pdf"]},
                       engines={"gemini": {"base_url": fake.url, "timeout": 5}})
        env.run_daemon(extra_env={"GEMINI_API_KEY": "AIzaTEST-0123456789-abcdefghijklmnopq"})
        env.drop(RESOURCES / "phototest.tif", name="bill.tif")
        result = env.wait_result("bill", timeout=120)
    assert result["pages"][0]["engine"] == "gemini" and result["pdf_file"] == "bill.pdf"
    assert result["text_file"] is None and not (env.outbox / "bill.txt").exists()
    ours = env.outbox / "bill.pdf"
    qpdf_check(ours)
    assert cer(pdftotext(ours), said) <= 0.01
    (page,) = PdfReader(ours).pages
    assert [float(v) for v in page.mediabox[2:]] == pytest.approx([640 * 72 / 200,
                                                                    480 * 72 / 200])


@pytest.mark.parametrize("fmt", ["JPEG", "PNG-palette", "PNG-rgba"])
def test_an_image_becomes_a_page_of_its_size_with_its_pixels_kept(fmt: str,
                                                                   tmp_path: Path) -> None:
    with Image.open(RESOURCES / "phototest.tif") as photo:
        rgb = photo.convert("RGB")
    path = tmp_path / f"page.{fmt.split('-')[0].lower()}"
    if fmt == "JPEG":
        rgb.save(path, dpi=(150, 150), quality=80)
    elif fmt == "PNG-palette":
        rgb.convert("P").save(path, dpi=(150, 150))
    else:
        rgb.convert("RGBA").save(path, dpi=(150, 150))
    out = tmp_path / "out.pdf"
    with open(out, "wb") as fh:
        layered = overlay.image_pages(path, fh, 1, lambda img, i: 150,
                                      lambda n, w, h: reading_order_layer("seen text", w, h),
                                      lambda m: None)
    assert layered == 1
    qpdf_check(out)
    (page,) = PdfReader(out).pages
    assert [float(v) for v in page.mediabox[2:]] == pytest.approx([640 * 72 / 150,
                                                                    480 * 72 / 150])
    (embedded,) = page.images
    if fmt == "JPEG":  # the file's own bytes: no second lossy encoding
        stream = page["/Resources"]["/XObject"]["/Im0"].get_object()
        assert stream["/Filter"] == "/DCTDecode" and stream._data == path.read_bytes()
    else:
        with Image.open(path) as original:
            assert ImageChops.difference(embedded.image.convert("RGB"),
                                         original.convert("RGB")).getbbox() is None
    assert "seen text" in pdftotext(out)
