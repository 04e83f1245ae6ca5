"""Make docs/searchable-pdf.png: a scan made searchable, with a search hit selected on it.

    .venv/bin/python bench/searchable_picture.py [--out docs/searchable-pdf.png]

The real scan tests/resources/linn.pdf goes through what a watch with
``outputs: [text, json, pdf]`` does (Tesseract with its text layer, then the ending's
assembly); the page of our PDF is rendered by pdfium and the characters pdfium's own text
search finds for a phrase are painted as a viewer paints a selection.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pypdfium2
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocr_daemon.config import TesseractConfig  # noqa: E402
from ocr_daemon.engines.base import Page, PageRequest  # noqa: E402
from ocr_daemon.engines.tesseract import TesseractEngine  # noqa: E402
from ocr_daemon.formats.pdf import PDFIUM_LOCK  # noqa: E402
from ocr_daemon.formats.sniff import PDF  # noqa: E402
from ocr_daemon.pipeline.searchable import assemble  # noqa: E402

SOURCE = ROOT / "tests" / "resources" / "linn.pdf"
PHRASE = "state-of-the-art composition and performance tool for the professional musician"
DPI = 100


def searchable(work: Path) -> Path:
    extraction = TesseractEngine(TesseractConfig()).extract(
        PageRequest(SOURCE, PDF, (Page(1, 0),), layers=True))
    (work / "layer.pdf").write_bytes(extraction.layers[1])
    pages = [{"number": 1, "text": extraction.pages[0].text, "engine": "tesseract"}]
    out = work / "linn.pdf"
    with open(out, "wb") as fh:
        assemble(SOURCE, PDF, 1, pages, lambda n: work / "layer.pdf", fh)
    return out


def picture(path: Path, phrase: str) -> Image.Image:
    with PDFIUM_LOCK:
        doc = pypdfium2.PdfDocument(path)
        page = doc[0]
        scale = DPI / 72
        img = page.render(scale=scale).to_pil().convert("RGB")
        height = page.get_height()
        text = page.get_textpage()
        searcher = text.search(phrase, match_case=False)
        hit = searcher.get_next()
        if hit is None:
            raise SystemExit(f"{phrase!r} is not found in the text layer")
        first, count = hit
        boxes = [text.get_charbox(i) for i in range(first, first + count)]
        searcher.close()
        text.close()
        page.close()
        doc.close()
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for left, bottom, right, top in boxes:
        draw.rectangle([left * scale, (height - top) * scale, right * scale,
                        (height - bottom) * scale], fill=(51, 144, 255, 90))
    shown = Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB")
    return shown.crop((0, 0, shown.width, shown.height * 2 // 5))  # the page's top


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "searchable-pdf.png")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ocrd-picture-") as tmp:
        img = picture(searchable(Path(tmp)), PHRASE)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    img.save(args.out, optimize=True)
    print(f"{args.out}: {img.width} x {img.height}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
