"""Tesseract languages: the packs installed, and `languages: auto` (script detection, OSD)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable

from ocr_daemon import log

AUTO = "auto"
NOT_LANGUAGES = frozenset({"osd", "equ"})  # data files that are not OCR languages
# Tesseract's OSD script names -> language packs that read the script, most used first.
# `languages: auto` uses the installed packs of the detected script (all of them, joined:
# Tesseract picks per word), else the script's own pack (script/Latin), else the default.
SCRIPT_LANGUAGES: dict[str, tuple[str, ...]] = {
    "Latin": ("eng", "deu", "fra", "spa", "ita", "por", "nld", "pol", "ces", "swe", "dan",
              "nor", "fin", "hun", "ron", "tur", "slk", "slv", "hrv", "lit", "lav", "est",
              "cat", "vie", "ind", "msa", "lat", "gle", "isl"),
    "Cyrillic": ("rus", "ukr", "bul", "srp", "bel", "mkd", "kaz"),
    "Greek": ("ell", "grc"),
    "Arabic": ("ara", "fas", "urd"),
    "Hebrew": ("heb", "yid"),
    "Han": ("chi_sim", "chi_tra"),
    "HanS": ("chi_sim",),
    "HanT": ("chi_tra",),
    "Japanese": ("jpn",),
    "Hangul": ("kor",),
    "Korean": ("kor",),
    "Devanagari": ("hin", "mar", "nep", "san"),
    "Bengali": ("ben", "asm"),
    "Thai": ("tha",),
    "Tamil": ("tam",),
    "Telugu": ("tel",),
    "Kannada": ("kan",),
    "Malayalam": ("mal",),
    "Gujarati": ("guj",),
    "Gurmukhi": ("pan",),
    "Armenian": ("hye",),
    "Georgian": ("kat",),
    "Ethiopic": ("amh",),
    "Khmer": ("khm",),
    "Lao": ("lao",),
    "Myanmar": ("mya",),
    "Sinhala": ("sin",),
    "Tibetan": ("bod",),
}
OSD_TIMEOUT = 60.0


def installed(binary: str = "tesseract") -> list[str] | None:
    """The language packs `tesseract --list-langs` reports (osd included), None when the
    program cannot be run."""
    try:
        done = subprocess.run([binary, "--list-langs"], capture_output=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    lines = done.stdout.decode("utf-8", errors="replace").splitlines()
    return sorted(line.strip() for line in lines[1:] if line.strip())


def missing(languages: str, packs: Iterable[str]) -> list[str]:
    """The languages of ``languages`` (e.g. eng+deu, or auto) not among ``packs``."""
    have = set(packs)
    if languages == AUTO:
        return [] if "osd" in have else ["osd"]
    return [lang for lang in languages.split("+") if lang and lang not in have]


def for_script(script: str | None, packs: Iterable[str], default: str = "eng") -> str:
    """The ``-l`` value for a page in ``script``: its installed packs joined with +."""
    have = set(packs) - NOT_LANGUAGES
    chosen = [lang for lang in SCRIPT_LANGUAGES.get(script or "Latin", ()) if lang in have]
    if not chosen and script and f"script/{script}" in have:
        chosen = [f"script/{script}"]
    return "+".join(chosen) or default


def parse_osd(output: str) -> str | None:
    """The script name from `tesseract --psm 0` output ("Script: Latin"), if any."""
    for line in output.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Script" and value.strip():
            return value.strip()
    return None


def detect_script(binary: str, png: bytes, dpi: int, env: dict[str, str]) -> str | None:
    """The page's script by Tesseract's orientation and script detection; None when it
    cannot tell (too little text, or the osd pack missing)."""
    try:
        done = subprocess.run([binary, "stdin", "stdout", "--psm", "0", "--dpi", str(dpi)],
                              input=png, capture_output=True, env=env, timeout=OSD_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.get(engine="tesseract").warning("osd_failed", error=type(exc).__name__)
        return None
    if done.returncode != 0:
        return None
    return parse_osd(done.stdout.decode("utf-8", errors="replace"))


def package(language: str) -> str:
    """Debian's package for a Tesseract language pack: chi_sim -> tesseract-ocr-chi-sim."""
    if language.startswith("script/"):
        return "tesseract-ocr-script-" + language.removeprefix("script/").lower()
    return "tesseract-ocr-" + language.lower().replace("_", "-")


def config_problems(configured: dict[str, str], packs: list[str]) -> list[str]:
    """For each key (engines.tesseract.languages, watches[i].engine_options.languages) whose
    languages are not all installed, a line naming the key, what is missing and its fix."""
    problems = []
    for key, value in configured.items():
        absent = missing(value, packs)
        if absent:
            problems.append(
                f"{key}: {'+'.join(absent)} not installed (apt-get install "
                f"{' '.join(package(a) for a in absent)}); installed: {', '.join(packs)}")
    return problems
