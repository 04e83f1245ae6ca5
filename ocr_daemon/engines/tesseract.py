"""Engine `tesseract`: each page as a PNG on the stdin of Debian's `tesseract` program."""

from __future__ import annotations

import errno
import os
import re
import signal
import struct
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

from ocr_daemon import log
from ocr_daemon.config import TesseractConfig
from ocr_daemon.engines import languages
from ocr_daemon.engines.base import (
    Engine,
    EngineContext,
    Extraction,
    PageRequest,
    PageText,
    settings_for,
)
from ocr_daemon.errors import EngineUnavailable, PageFailed, TransientEngineError, UnsupportedType
from ocr_daemon.formats import images, pdf
from ocr_daemon.formats.sniff import IMAGE_TYPES, PDF

INSTALL_HINT = ("Install Tesseract with `apt-get install tesseract-ocr tesseract-ocr-eng` "
                "(or set engines.tesseract.binary to the program's path).")
# An image whose resolution is missing or not believable is taken for a page about this
# tall: Tesseract's layout analysis splits ordinary paragraphs into bogus columns when it
# works at its fallback of 70 dpi on a page scanned at 200-300 dpi.
PAGE_INCHES = 11.0
MAX_PAGE_INCHES = 20.0  # a stated resolution implying a taller page is not believed
MIN_DPI, MAX_DPI, MAX_STATED_DPI = 70, 1200, 2400
_MISSING_LANGUAGE = re.compile(r"Failed loading language '([^']+)'")


def language_package(language: str) -> str:
    """Debian's package for a Tesseract language: chi_sim -> tesseract-ocr-chi-sim."""
    if "/" in language:  # script/Latin and the like
        return "tesseract-ocr-script-* (apt-cache search tesseract-ocr-script)"
    return "tesseract-ocr-" + language.lower().replace("_", "-")


def page_dpi(width: int, height: int, stated: float | None) -> int:
    """The resolution to tell Tesseract for an image of ``width`` x ``height`` pixels."""
    longest = max(width, height)
    if stated and MIN_DPI <= stated <= MAX_STATED_DPI and longest / stated <= MAX_PAGE_INCHES:
        return round(stated)
    return max(MIN_DPI, min(MAX_DPI, round(longest / PAGE_INCHES)))


def stated_dpi(path: Path, index: int) -> float | None:
    """The horizontal resolution an image file states for frame ``index``, if any."""
    try:
        with Image.open(path) as img:
            img.seek(index)
            dpi = img.info.get("dpi")
    except (OSError, ValueError, EOFError, SyntaxError):  # images.frame_png read it already
        return None
    if not (isinstance(dpi, tuple) and dpi):
        return None
    try:
        return float(dpi[0])
    except (TypeError, ValueError):
        return None


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header (IHDR is always the first chunk)."""
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


class TesseractEngine:
    name = "tesseract"

    def __init__(self, settings: TesseractConfig) -> None:
        self.settings = settings
        self.logger = log.get(engine=self.name)
        self._packs: list[str] | None = None

    def extract(self, request: PageRequest) -> Extraction:
        pages = []
        layers: dict[int, bytes] = {}
        warnings: list[str] = []
        settled: str | None = None  # `auto`: the first page OSD can tell decides the chunk
        for page in request.pages:
            png, dpi = self._image(request, page.index)
            langs = settled
            if langs is None:
                langs, sure = self.languages_for(png, dpi, page.number)
                settled = langs if sure else None
            if not request.layers:
                pages.append(PageText(page.number, self.read(png, dpi, page.number, langs),
                                      self.name))
                continue
            text, layer = self.read_with_layer(png, dpi, page.number, langs)
            pages.append(PageText(page.number, text, self.name))
            if layer:
                layers[page.number] = layer
            else:
                warnings.append(f"page {page.number}: tesseract made no text layer: the "
                                "searchable PDF keeps the page without one")
        return Extraction(pages, warnings, layers)

    def languages_for(self, png: bytes, dpi: int, number: int) -> tuple[str, bool]:
        """The configured languages; for `auto`, the installed packs of the page's script
        (Tesseract OSD), e.g. eng+deu+fra for a Latin page with those three installed. And
        whether the choice is sure (False: OSD could not tell, the default was taken)."""
        if self.settings.languages != languages.AUTO:
            return self.settings.languages, True
        if self._packs is None:
            self._packs = languages.installed(self.settings.binary) or []
        script = languages.detect_script(self.settings.binary, png, dpi,
                                         {**os.environ, "OMP_THREAD_LIMIT": "1"})
        chosen = languages.for_script(script, self._packs)
        self.logger.debug("languages_chosen", page=number, script=script, languages=chosen)
        return chosen, script is not None

    def _image(self, request: PageRequest, index: int) -> tuple[bytes, int]:
        if request.mime == PDF:
            return pdf.render(request.path, index, self.settings.dpi)
        if request.mime in IMAGE_TYPES:
            png = images.frame_png(request.path, index)
            return png, page_dpi(*png_size(png), stated_dpi(request.path, index))
        raise UnsupportedType(f"the tesseract engine cannot read {request.mime}")

    def argv(self, dpi: int, langs: str | None = None) -> list[str]:
        s = self.settings
        return [s.binary, "stdin", "stdout", "-l", langs or s.languages, "--psm", str(s.psm),
                "--dpi", str(dpi)]

    def read(self, png: bytes, dpi: int, number: int, langs: str | None = None) -> str:
        """Text of one page image; every way the subprocess can fail becomes our error."""
        stdout = self._run(self.argv(dpi, langs), png, number)
        return clean(stdout.decode("utf-8", errors="replace"))

    def read_with_layer(self, png: bytes, dpi: int, number: int,
                        langs: str | None = None) -> tuple[str, bytes | None]:
        """Text of one page image and, from the same run, its text-only PDF page (Tesseract's
        PDF renderer with textonly_pdf=1: invisible words at their places, no image)."""
        with tempfile.TemporaryDirectory(prefix="ocrd-tess-") as tmp:
            base = Path(tmp) / "page"
            argv = self.argv(dpi, langs)
            argv[2] = str(base)  # outputbase instead of stdout: two renderers, two files
            self._run([*argv, "-c", "textonly_pdf=1", "txt", "pdf"], png, number)
            try:
                text = base.with_suffix(".txt").read_text("utf-8", errors="replace")
            except FileNotFoundError:
                raise PageFailed(f"page {number}: tesseract wrote no text") from None
            layer = base.with_suffix(".pdf")
            return clean(text), layer.read_bytes() if layer.exists() else None

    def _run(self, argv: list[str], png: bytes, number: int) -> bytes:
        # One OpenMP thread: the worker pool runs pages in parallel (15.9 s vs 2.7 s a page).
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        try:
            done = subprocess.run(argv, input=png, capture_output=True, env=env,
                                  timeout=self.settings.timeout, check=False)
        except FileNotFoundError:
            raise EngineUnavailable(f"the tesseract program {self.settings.binary!r} is not "
                                    "installed", hint=INSTALL_HINT) from None
        except OSError as exc:  # not executable; or no memory or processes left to start it
            if exc.errno in (errno.EACCES, errno.ENOEXEC, errno.ENOTDIR, errno.EISDIR):
                raise EngineUnavailable(f"cannot run {self.settings.binary!r}: {exc.strerror}",
                                        hint=INSTALL_HINT) from None
            raise TransientEngineError(f"page {number}: cannot start tesseract: "
                                       f"{exc.strerror}") from None
        except subprocess.TimeoutExpired:
            raise TransientEngineError(f"page {number}: tesseract took longer than "
                                       f"{self.settings.timeout:g}s (engines.tesseract.timeout)"
                                       ) from None
        stderr = done.stderr.decode("utf-8", errors="replace")
        missing = sorted(set(_MISSING_LANGUAGE.findall(stderr)))
        if missing:
            packages = " ".join(language_package(m) for m in missing)
            raise EngineUnavailable(
                f"Tesseract language data missing for {'+'.join(missing)}",
                hint=f"Install it with `apt-get install {packages}`, or change "
                     "engines.tesseract.languages (`tesseract --list-langs` shows those "
                     "installed).")
        if done.returncode == -signal.SIGKILL:  # the OOM killer, most likely: try again later
            raise TransientEngineError(f"page {number}: tesseract was killed (SIGKILL)")
        if done.returncode != 0:
            lines = [line for line in stderr.splitlines() if line.strip()]
            reason = "; ".join(lines[-2:]) or f"exit status {done.returncode}"
            self.logger.warning("tesseract_failed", page=number, returncode=done.returncode,
                                stderr=stderr[-2000:])
            raise PageFailed(f"page {number}: tesseract cannot read the page image: {reason}")
        return done.stdout


def clean(text: str) -> str:
    """Our .txt output separates pages with form feeds: none may come from inside a page."""
    return text.replace("\f", "").strip()


def create(ctx: EngineContext) -> Engine:
    return TesseractEngine(settings_for(ctx.cfg.engines.tesseract, ctx.watch))
