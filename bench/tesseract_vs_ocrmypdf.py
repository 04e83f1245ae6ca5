"""Benchmark: our `tesseract` engine against `ocrmypdf --sidecar` and plain `tesseract`.

    .venv/bin/python bench/tesseract_vs_ocrmypdf.py [--jobs N] [--single] [--rounds R] [--quick]

The same scanned pages go through three paths, and the table gives pages per minute and the
character error rate (CER: Levenshtein distance over whitespace-normalized text, per
reference character) of each:

- ours: ``TesseractEngine`` as a worker runs it (pages rendered by pypdfium2 at the
  configured 300 dpi, PNG on Tesseract's stdin, one OpenMP thread), N processes taking one
  page at a time, as the prefork pool does across documents and chunks;
- ocrmypdf: ``ocrmypdf --sidecar FILE --output-type none --jobs N`` once per input file,
  what a user would run instead (installed into its own virtualenv, by default bench/.venv);
- plain tesseract: ``tesseract IMAGE stdout`` on each page image at the scan's own
  resolution, its defaults otherwise (the CER reference; N pages at a time, one thread each).

Pages (from /work/shared/corpus, or tests/resources where copied): two real scans with
hand-made ground truth (tesseract-ocr/test phototest.tif and phototest_2.tif), a real
scanned PDF whose reference text is itself OCR output (OCRmyPDF's linn: reported apart,
never in the headline CER), and the four pages of a real typeset PDF (pdflatex-4-pages)
turned into a scan (300 dpi, rotated 0.4 degrees, JPEG): its text layer is the reference.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocr_daemon.config import TesseractConfig  # noqa: E402
from ocr_daemon.engines.base import Page, PageRequest  # noqa: E402
from ocr_daemon.engines.tesseract import TesseractEngine, page_dpi, stated_dpi  # noqa: E402
from ocr_daemon.formats import pdf  # noqa: E402
from ocr_daemon.formats.sniff import PDF, TIFF  # noqa: E402
from tests.cer import levenshtein, normalize  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from rows import emit  # noqa: E402

CORPUS = Path(os.environ.get("OCRD_CORPUS", ROOT.parent / "shared" / "corpus"))
RESOURCES = ROOT / "tests" / "resources"
SCAN_DPI = 300


@dataclass
class Doc:
    name: str
    path: Path  # what ours and ocrmypdf are given
    mime: str
    truths: list[str]  # reference text per page
    images: list[Path]  # per page, for plain tesseract (carrying their resolution)
    trusted: bool = True  # False: the reference is itself OCR output
    image_dpi: int | None = None  # an image's resolution, as ours assumes it (for ocrmypdf)
    texts: dict[str, list[str]] = field(default_factory=dict)  # path -> text per page


def _corpus(rel: str) -> Path:
    path = CORPUS / rel
    if not path.exists():
        raise SystemExit(f"missing {path}: set OCRD_CORPUS to the shared corpus folder")
    return path


def _png(img: Image.Image, path: Path, dpi: int) -> Path:
    img.save(path, format="PNG", dpi=(dpi, dpi))
    return path


def build_pages(work: Path, quick: bool = False) -> list[Doc]:
    """The benchmark's documents, written into ``work`` (``quick``: the two phototest pages)."""
    photo_gt = _corpus("groundtruth/tesseract-ocr_test/testing/phototest.txt").read_text()
    docs = []
    for name in ("phototest.tif", "phototest_2.tif"):
        src = _corpus(f"files/tesseract-ocr_test/testing/{name}")
        with Image.open(src) as img:
            dpi = page_dpi(img.width, img.height, stated_dpi(src, 0))
        docs.append(Doc(name, src, TIFF, [photo_gt], [src], image_dpi=dpi))
    if quick:
        return docs
    linn = RESOURCES / "linn.pdf"
    linn_png = Image.open(io.BytesIO(pdf.render(linn, 0, SCAN_DPI)[0]))  # its native 300 dpi
    docs.append(Doc("linn.pdf", linn, PDF, [(RESOURCES / "linn.gt.txt").read_text("utf-8")],
                    [_png(linn_png, work / "linn.png", SCAN_DPI)], trusted=False))
    typeset = RESOURCES / "pdflatex-4-pages.pdf"
    truths = pdf.page_texts(typeset, [0, 1, 2, 3])
    scans, images = [], []
    for i in range(4):
        page = Image.open(io.BytesIO(pdf.render(typeset, i, SCAN_DPI)[0])).convert("L")
        page = page.rotate(0.4, resample=Image.Resampling.BICUBIC, fillcolor=255)
        buf = io.BytesIO()
        page.save(buf, format="JPEG", quality=70)
        scans.append(Image.open(io.BytesIO(buf.getvalue())))
        images.append(_png(scans[-1], work / f"typeset-{i + 1}.png", SCAN_DPI))
    scan_pdf = work / "typeset-scan.pdf"
    scans[0].save(scan_pdf, format="PDF", resolution=SCAN_DPI, save_all=True,
                  append_images=scans[1:])
    docs.append(Doc("typeset-scan.pdf (4 p.)", scan_pdf, PDF, truths, images))
    return docs


# --- the three paths ---------------------------------------------------------------------------


def _ours_page(job: tuple[str, str, int]) -> str:
    path, mime, index = job
    engine = TesseractEngine(TesseractConfig())
    request = PageRequest(Path(path), mime, (Page(index + 1, index),))
    return engine.extract(request).pages[0].text


def run_ours(docs: list[Doc], jobs: int) -> float:
    work = [(str(d.path), d.mime, i) for d in docs for i in range(len(d.truths))]
    started = time.perf_counter()
    if jobs == 1:
        texts = [_ours_page(w) for w in work]
    else:
        with ProcessPoolExecutor(jobs) as pool:
            texts = list(pool.map(_ours_page, work))
    seconds = time.perf_counter() - started
    it = iter(texts)
    for d in docs:
        d.texts[f"ours-{jobs}"] = [next(it) for _ in d.truths]
    return seconds


def install_ocrmypdf(venv: Path) -> Path:
    program = venv / "bin" / "ocrmypdf"
    if not program.exists():
        print(f"installing ocrmypdf into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q",
                               "--disable-pip-version-check", "ocrmypdf"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"pip install ocrmypdf failed:\n{done.stderr[-3000:]}")
    return program


def run_ocrmypdf(program: Path, docs: list[Doc], jobs: int, work: Path) -> float:
    started = time.perf_counter()
    for d in docs:
        sidecar = work / f"sidecar-{jobs}.txt"
        # ocrmypdf refuses an image whose stated resolution it finds not credible (72 dpi)
        # until told one: it is told the resolution our engine assumes.
        dpi = ["--image-dpi", str(d.image_dpi)] if d.image_dpi else []
        done = subprocess.run(
            [str(program), "--sidecar", str(sidecar), "--output-type", "none", "--jobs",
             str(jobs), "--quiet", *dpi, str(d.path), "-"], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"ocrmypdf failed on {d.name}: {done.stderr[-2000:]}")
        pages = sidecar.read_text("utf-8").split("\f")
        d.texts[f"ocrmypdf-{jobs}"] = (pages + [""] * len(d.truths))[:len(d.truths)]
    return time.perf_counter() - started


def _plain_page(image: str) -> str:
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    return subprocess.run(["tesseract", image, "stdout"], env=env, capture_output=True,
                          text=True, check=True).stdout


def run_plain(docs: list[Doc], jobs: int) -> float:
    """Plain tesseract on each page image, ``jobs`` pages at a time (one thread each)."""
    images = [str(img) for d in docs for img in d.images]
    started = time.perf_counter()
    with ProcessPoolExecutor(jobs) as pool:
        texts = iter(list(pool.map(_plain_page, images)))
    seconds = time.perf_counter() - started
    for d in docs:
        d.texts["plain"] = [next(texts) for _ in d.images]
    return seconds


# --- report ------------------------------------------------------------------------------------


def cer_of(docs: list[Doc], key: str, trusted: bool) -> float:
    edits = chars = 0
    for d in docs:
        if d.trusted != trusted:
            continue
        for text, truth in zip(d.texts[key], d.truths, strict=True):
            ref = normalize(truth)
            edits += levenshtein(normalize(text), ref)
            chars += len(ref)
    return 100 * edits / chars if chars else float("nan")  # no such pages (--quick: no linn)


def machine() -> list[str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    version = subprocess.run(["tesseract", "--version"], capture_output=True,
                             text=True).stdout.splitlines()[0]
    return [f"CPU: {os.cpu_count()} x {model}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}",
            f"{version}; load average at start {os.getloadavg()[0]:.2f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="processes for ours, --jobs for ocrmypdf (default: CPU count)")
    parser.add_argument("--venv", type=Path, default=ROOT / "bench" / ".venv",
                        help="virtualenv holding ocrmypdf (created when missing)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="times every path runs, interleaved; the fastest counts "
                             "(damps other load on the machine)")
    parser.add_argument("--single", action="store_true",
                        help="also one process for ours and --jobs 1 for ocrmypdf")
    parser.add_argument("--quick", action="store_true", help="the two phototest pages only")
    args = parser.parse_args(argv)
    if shutil.which("tesseract") is None:
        raise SystemExit("tesseract is not installed: apt-get install tesseract-ocr")
    program = install_ocrmypdf(args.venv)
    ocrmypdf_version = subprocess.run([str(program), "--version"], capture_output=True,
                                      text=True).stdout.strip()
    header = machine()
    with tempfile.TemporaryDirectory(prefix="ocrd-bench-") as tmp:
        work = Path(tmp)
        docs = build_pages(work, args.quick)
        pages = sum(len(d.truths) for d in docs)
        runs: dict[str, Callable[[], float]] = {}
        for jobs in sorted({args.jobs, 1} if args.single else {args.jobs}, reverse=True):
            runs[f"ours-{jobs}"] = partial(run_ours, docs, jobs)
            runs[f"ocrmypdf-{jobs}"] = partial(run_ocrmypdf, program, docs, jobs, work)
        runs["plain"] = partial(run_plain, docs, args.jobs)
        seconds: dict[str, float] = {}
        for r in range(args.rounds):  # interleaved; the best of the rounds counts
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            for key in order:
                print(f"round {r + 1}/{args.rounds}: {key} on {pages} pages ...", flush=True)
                secs = runs[key]()
                seconds[key] = min(secs, seconds.get(key, secs))
        seconds = {key: seconds[key] for key in runs}
    labels = {"plain": f"plain `tesseract IMG stdout`, {args.jobs} at a time"}
    for key in seconds:
        tool, _, jobs = key.partition("-")
        if tool == "ours":
            labels[key] = f"ours: engine tesseract, {jobs} process(es)"
        elif tool == "ocrmypdf":
            labels[key] = f"ocrmypdf --sidecar, --jobs {jobs}"
    print()
    print("\n".join(header))
    print(f"ocrmypdf {ocrmypdf_version}; {pages} pages: " + ", ".join(d.name for d in docs))
    print(f"load average at end {os.getloadavg()[0]:.2f} (other work on the machine skews "
          f"pages/min, not CER); pages/min from the best of {args.rounds} round(s)")
    print()
    print(f"| {'path':<42} | {'pages/min':>9} | {'CER %':>6} | {'CER % linn*':>11} |")
    print(f"|{'-' * 44}|{'-' * 11}|{'-' * 8}|{'-' * 13}|")
    for key, secs in seconds.items():
        print(f"| {labels[key]:<42} | {60 * pages / secs:>9.1f} | "
              f"{cer_of(docs, key, True):>6.2f} | {cer_of(docs, key, False):>11.2f} |")
    print()
    print("CER %: phototest, phototest_2 and the 4 typeset-scan pages (trusted references).")
    print("* linn: reference text is OCR output shipped by OCRmyPDF (approximate, biased).")
    print()
    print("per document CER % (" + ", ".join(seconds) + "):")
    for d in docs:
        per = []
        for key in seconds:
            ref = " ".join(normalize(t) for t in d.truths)
            hyp = " ".join(normalize(t) for t in d.texts[key])
            per.append(f"{100 * levenshtein(hyp, ref) / len(ref):.2f}")
        print(f"  {d.name:<26} " + "  ".join(per))
    ours, theirs = f"ours-{args.jobs}", f"ocrmypdf-{args.jobs}"
    ours_ppm, theirs_ppm = 60 * pages / seconds[ours], 60 * pages / seconds[theirs]
    ours_cer, plain_cer = cer_of(docs, ours, True), cer_of(docs, "plain", True)
    emit([
        (f"tesseract path / ocrmypdf --sidecar, pages per minute ({args.jobs} jobs, "
         f"{ours_ppm:.1f} vs {theirs_ppm:.1f})", f"{ours_ppm / theirs_ppm:.2f} x", ">= 1 x",
         ours_ppm >= theirs_ppm),
        ("tesseract path CER - plain tesseract CER (clean scans)",
         f"{ours_cer:.2f} - {plain_cer:.2f} % = {ours_cer - plain_cer:+.2f} points",
         "<= 1 point", ours_cer - plain_cer <= 1.0),
    ])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
