"""OCR languages: `auto` picks the installed packs of the page's script; config check refuses
languages that are not installed, naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ocr_daemon.config import TesseractConfig
from ocr_daemon.engines import languages
from ocr_daemon.engines.base import Page, PageRequest
from ocr_daemon.engines.tesseract import TesseractEngine
from ocr_daemon.formats.sniff import PDF
from tests.support.pdfs import image_pdf

from .cer import cer

GERMAN = ("Die Größe der Straße überrascht jeden Besucher.\n"
          "Müller und Schäfer begrüßen die Gäste im Hof.\n"
          "Übermorgen öffnen wir die Tür für alle Bürger.")
FRENCH = ("Le garçon très âgé préfère la fenêtre près du théâtre.\n"
          "Où est la forêt? À côté du château, dit-elle.\n"
          "Noël approche et l'élève reçoit un cadeau bientôt.")
DPI = 300
PACKS = languages.installed() or []
needs_packs = pytest.mark.skipif(not {"deu", "fra", "osd"} <= set(PACKS),
                                 reason="tesseract-ocr-deu, -fra and -osd not installed "
                                        "(scripts/setup --test installs them)")


def scan(path: Path, text: str) -> Path:
    """A 300-dpi image-only PDF of ``text`` in 12-point type (DejaVu Sans when at hand)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("L", (int(8.5 * DPI), int(4 * DPI)), 255)
    size = round(12 * DPI / 72)
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    font: Any = (ImageFont.truetype(str(dejavu), size) if dejavu.is_file()
                 else ImageFont.load_default(size=size))
    ImageDraw.Draw(img).multiline_text((DPI, DPI), text, fill=0, font=font,
                                       spacing=round(6 * DPI / 72))
    return image_pdf(path, [img], dpi=DPI)


def ocr(path: Path, langs: str) -> str:
    engine = TesseractEngine(TesseractConfig(languages=langs, dpi=DPI))
    [page] = engine.extract(PageRequest(path, PDF, (Page(1, 0),))).pages
    return page.text


def test_a_script_gets_its_installed_packs_most_used_first() -> None:
    assert languages.for_script("Latin", ["fra", "osd", "deu", "eng"]) == "eng+deu+fra"
    assert languages.for_script("Cyrillic", ["eng", "rus", "osd"]) == "rus"
    assert languages.for_script("Han", ["eng", "script/Han"]) == "script/Han"
    assert languages.for_script("Cyrillic", ["eng", "osd"]) == "eng"  # nothing better
    assert languages.for_script(None, ["eng", "deu"]) == "eng+deu"  # OSD could not tell


def test_osd_output_gives_the_script() -> None:
    out = ("Page number: 0\nOrientation in degrees: 0\nRotate: 0\nOrientation confidence: 9.1\n"
           "Script: Cyrillic\nScript confidence: 4.2\n")
    assert languages.parse_osd(out) == "Cyrillic"
    assert languages.parse_osd("Too few characters. Skipping this page\n") is None


def test_missing_languages_and_their_packages() -> None:
    assert languages.missing("eng+deu+tlh", ["eng", "deu"]) == ["tlh"]
    assert languages.missing("auto", ["eng"]) == ["osd"]
    assert languages.package("chi_sim") == "tesseract-ocr-chi-sim"


@needs_packs
@pytest.mark.parametrize(("text", "words"), [(GERMAN, ["Größe", "Straße", "begrüßen"]),
                                             (FRENCH, ["garçon", "fenêtre", "château"])])
def test_auto_reads_a_german_and_a_french_scan_with_their_packs(
        tmp_path: Path, text: str, words: list[str]) -> None:
    source = scan(tmp_path / "scan.pdf", text)
    read = ocr(source, "auto")
    assert cer(read, text) < 0.03
    for word in words:
        assert word in read
    assert cer(ocr(source, "eng"), text) > cer(read, text)  # the pack is what made it right


def check(tmp_path: Path, tesseract: dict[str, Any], watch: dict[str, Any] | None = None
          ) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "engines": {"tesseract": tesseract},
        "watches": [{"name": "w", "root": str(tmp_path / "w"), **(watch or {})}]}))
    return subprocess.run([sys.executable, "-m", "ocr_daemon", "config", "check", "--config",
                           str(path)], capture_output=True, text=True, check=False)


@pytest.mark.skipif(not PACKS, reason="tesseract not installed")
def test_config_check_lists_installed_packs_and_refuses_a_missing_one(tmp_path: Path) -> None:
    done = check(tmp_path, {"languages": "eng"})
    assert done.returncode == 0, done.stderr
    assert f"# tesseract language packs installed: {', '.join(PACKS)}" in done.stdout
    done = check(tmp_path, {"languages": "eng+tlh"})
    assert done.returncode == 2
    assert "engines.tesseract.languages: tlh not installed" in done.stderr
    assert "apt-get install tesseract-ocr-tlh" in done.stderr
    done = check(tmp_path, {}, {"engine": "tesseract", "engine_options": {"languages": "xyz"}})
    assert done.returncode == 2
    assert "watches[0].engine_options.languages: xyz not installed" in done.stderr

