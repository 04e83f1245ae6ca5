"""Large PDFs through the daemon (engine auto) against plain loops in the same run (issue 14)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pypdfium2
from harness import ROOT, Env, machine, read_json, stack, wait_for
from PIL import Image
from rows import emit

from tests.conftest import descendants
from tests.support.pdfs import drawn_page, image_pdf, make_text_pdf

CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
BOOKS = {"freeculture.pdf": "files/mozilla_pdf.js/test/pdfs/freeculture.pdf",
         "thinkpython2.pdf": "files/AllenDowney_ThinkPython2/book/thinkpython2.pdf"}
FALLBACK = ROOT / "tests" / "resources" / "pdflatex-4-pages.pdf"  # without the corpus
MB = 2**20
Row = tuple[str, str, str, bool | None]


# ---- the baselines -------------------------------------------------------------------------

def text_loop(path: Path, skip: frozenset[int] = frozenset()) -> float:
    """Seconds for the plain loop: open, every page's text layer (but ``skip``), close."""
    started = time.perf_counter()
    doc = pypdfium2.PdfDocument(path)
    for index in range(len(doc)):
        if index in skip:
            continue
        page = doc[index]
        textpage = page.get_textpage()
        textpage.get_text_bounded()
        textpage.close()
        page.close()
    doc.close()
    return time.perf_counter() - started


def tesseract_half(pngs: list[Path], dpi: int) -> None:
    """One worker of the baseline: plain `tesseract` over its images, one after another, with
    the daemon's arguments (eng, --psm 3, one OpenMP thread)."""
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    for png in pngs:
        subprocess.run(["tesseract", str(png), "stdout", "-l", "eng", "--psm", "3",
                        "--dpi", str(dpi)], capture_output=True, env=env, check=True)


def tesseract_pair(pngs: list[Path], dpi: int) -> float:
    """Wall seconds of two such workers, each over half of the images."""
    half = (len(pngs) + 1) // 2
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda part: tesseract_half(part, dpi), [pngs[:half], pngs[half:]]))
    return time.perf_counter() - started


# ---- the inputs ----------------------------------------------------------------------------

def corpus_book(name: str) -> Path | None:
    path = CORPUS / BOOKS[name]
    return path if path.is_file() else None


def repeated_text(source: Path, pages: int, out: Path) -> Path:
    """A ``pages``-page text PDF: ``source``'s pages with a text layer (freeculture's cover
    and one figure page are images, which `auto` rightly OCRs) over and over, the last copy
    trimmed."""
    src = pypdfium2.PdfDocument(source)
    texts = []
    for i in range(len(src)):
        page = src[i]
        textpage = page.get_textpage()
        if len(textpage.get_text_bounded().strip()) >= 20:
            texts.append(i)
        textpage.close()
        page.close()
    doc = pypdfium2.PdfDocument.new()
    while len(doc) < pages:
        doc.import_pages(src, texts[:pages - len(doc)])
    doc.save(out)
    doc.close()
    src.close()
    return out


def render_png(doc: Any, index: int, dpi: int, out: Path) -> Path:
    """Page ``index`` as the daemon's tesseract path renders it: grayscale PNG at ``dpi``."""
    page = doc[index]
    page.render(scale=dpi / 72, grayscale=True).to_pil().save(out, dpi=(dpi, dpi))
    page.close()
    return out


def scan_pdf(images: list[Path], dpi: int, out: Path) -> Path:
    """An image-only PDF of the images (Pillow's PDF writer: what a scanner makes)."""
    pages = [Image.open(p) for p in images]
    image_pdf(out, pages, dpi)
    for page in pages:
        page.close()
    return out


def with_scans(text: Path, every: int, dpi: int, folder: Path) -> tuple[Path, list[Path]]:
    """``text`` with every ``every``-th page replaced by a scan of itself (no text layer),
    and the scans as the daemon will render them (the baseline's images)."""
    doc = pypdfium2.PdfDocument(text)
    indices = list(range(every - 1, len(doc), every))
    shots = [render_png(doc, i, dpi, folder / f"shot{i:05d}.png") for i in indices]
    scans = pypdfium2.PdfDocument(scan_pdf(shots, dpi, folder / "scans.pdf"))
    for k, index in enumerate(indices):
        doc.del_page(index)
        doc.import_pages(scans, [k], index=index)
    mixed = folder / "mixed.pdf"
    doc.save(mixed)
    pngs = [render_png(scans, k, dpi, folder / f"scan{k:05d}.png") for k in range(len(scans))]
    doc.close()
    scans.close()
    return mixed, pngs


def warm_up_pdf(folder: Path, dpi: int) -> Path:
    """Two pages, a text page and a scan: every process loaded, tesseract's data cached."""
    text = make_text_pdf(folder / "warm-text.pdf", ["warm up the workers"])
    scan = image_pdf(folder / "warm-scan.pdf", [drawn_page("warm up tesseract", dpi)], dpi)
    doc = pypdfium2.PdfDocument(text)
    doc.import_pages(pypdfium2.PdfDocument(scan))
    doc.save(folder / "warmup.pdf")
    doc.close()
    return folder / "warmup.pdf"


# ---- the daemon ----------------------------------------------------------------------------

@dataclass
class Peak:
    """Peak memory of a worker's Python processes (tesseract's own processes left out)."""
    root: int
    largest: int = 0  # bytes, the largest VmHWM of one process
    summed: int = 0  # bytes, the largest sum of VmRSS over the processes at one sample
    stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        total = 0
        for pid in {self.root, *descendants(self.root)}:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if fields.get("Name", "").strip() == "tesseract":
                continue
            self.largest = max(self.largest, _kb(fields.get("VmHWM")))
            total += _kb(fields.get("VmRSS"))
        self.summed = max(self.summed, total)

    def run(self) -> None:
        while not self.stop.wait(0.25):
            self.sample()


def _kb(value: str | None) -> int:
    return int(value.split()[0]) * 1024 if value else 0


@contextmanager
def watching(peak: Peak | None) -> Iterator[None]:
    if peak is None:
        yield
        return
    thread = threading.Thread(target=peak.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        peak.stop.set()
        thread.join()
        peak.sample()
        peak.stop.clear()


@dataclass
class Timing:
    drop_to_result: float
    claim_to_result: float | None
    pages: int
    ocr_pages: int
    ocr_numbers: list[int] = field(default_factory=list)  # the pages `auto` OCRed


def epoch(stamp: object) -> float | None:
    if not stamp:
        return None
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


def claimed_at(env: Env, stem: str) -> float | None:
    """The claim time (epoch seconds) from the progress sidecar's created_at (the manifest's
    claimed_at), or None when this version of the daemon does not write it there."""
    try:
        return epoch(read_json(env.outbox / f"{stem}.progress.json").get("created_at"))
    except (OSError, ValueError):
        return None


def manifest_claim(env: Env, name: str) -> float | None:
    """The claim time from the manifest in processing/, while the document is there."""
    for path in env.processing.glob("*/manifest.json"):
        try:
            manifest = read_json(path)
        except (OSError, ValueError):
            continue
        if manifest.get("name") == name:
            return epoch(manifest.get("claimed_at"))
    return None


def through_daemon(env: Env, source: Path, peak: Peak | None = None,
                   timeout: float = 1800) -> Timing:
    """Drop ``source`` (one rename from a folder beside the inbox) and time it to its result
    JSON: from the drop, and from the claim. The end is the result file's mtime."""
    staging = env.root / "staging"
    staging.mkdir(exist_ok=True)
    shutil.copyfile(source, staging / source.name)
    result, error = env.outbox / f"{source.stem}.json", env.failed / f"{source.stem}.error.json"
    seen = None  # the claim time read from the manifest, should the sidecar not have it
    with watching(peak):
        dropped = time.time()
        os.rename(staging / source.name, env.inbox / source.name)
        while not result.exists():
            if error.exists():
                raise RuntimeError(f"{source.name} failed: {read_json(error)['error']}")
            if time.time() - dropped > timeout:
                raise TimeoutError(f"{source.name}: no result after {timeout:.0f} s")
            seen = seen or manifest_claim(env, source.name)
            time.sleep(0.02)
    ended = result.stat().st_mtime
    claim = claimed_at(env, source.stem) or seen
    pages = read_json(result)["pages"]
    ocred = [int(p["number"]) for p in pages if p.get("engine") == "tesseract"]
    return Timing(ended - dropped, None if claim is None else ended - claim, len(pages),
                  len(ocred), ocred)


@contextmanager
def daemon(engine: str, dpi: int, warm_up: Path) -> Iterator[tuple[Env, Peak]]:
    """A watcher and a worker (default config: a process per CPU, prefork) on a fresh Redis,
    warmed up; tesseract renders at ``dpi`` (the scans' own resolution); no Gemini key."""
    with stack(prefix=f"large{engine}:", watch={"engine": engine, "settle_seconds": 0.1},
               engines={"tesseract": {"dpi": dpi}},
               logging={"level": "warning", "format": "json"}) as (env, _redis):
        worker = env.start("worker", extra_env={"GEMINI_API_KEY": ""})
        env.start("watch")
        wait_for(env.inbox.is_dir, 60, what="the watcher's folders")
        through_daemon(env, warm_up, timeout=300)
        yield env, Peak(worker.pid)


# ---- the measurements ----------------------------------------------------------------------

@dataclass
class Measured:
    name: str
    daemon: Timing
    baseline: float  # seconds
    parts: str  # how the baseline is made up, for the printed table

    @property
    def seconds(self) -> float:
        """claim->result when the daemon says when it claimed, else drop->result."""
        claim = self.daemon.claim_to_result
        return self.daemon.drop_to_result if claim is None else claim

    @property
    def ratio(self) -> float:
        return self.seconds / self.baseline

    def times(self) -> str:
        claim = self.daemon.claim_to_result
        claim_text = "claim n/a" if claim is None else f"claim->result {claim:.2f} s"
        return f"{claim_text}, drop->result {self.daemon.drop_to_result:.2f} s"


def text_side_by_side(env: Env, name: str, source: Path, peak: Peak | None = None
                      ) -> Measured:
    """The loop just before and just after the daemon's run (their mean), on the same
    machine state: the stack is up and idle while the loop runs."""
    before = text_loop(source)
    timing = through_daemon(env, source, peak)
    after = text_loop(source)
    return Measured(name, timing, (before + after) / 2,
                    f"loop {before:.2f} / {after:.2f} s")


def mixed_side_by_side(env: Env, name: str, source: Path, pngs: list[Path], every: int,
                       dpi: int, peak: Peak) -> Measured:
    scans = frozenset(range(every - 1, every * len(pngs), every))
    loop = text_loop(source, scans)
    ocr = tesseract_pair(pngs, dpi)
    timing = through_daemon(env, source, peak)
    return Measured(name, timing, loop + ocr, f"loop {loop:.2f} + OCR {ocr:.2f} s")


def print_table(measured: list[Measured]) -> None:
    print("| document | pages | OCR pages | drop->result s | claim->result s | baseline s "
          "| baseline | claim->result / baseline |")
    print("|---|---|---|---|---|---|---|---|")
    for m in measured:
        claim = m.daemon.claim_to_result
        print(f"| {m.name} | {m.daemon.pages} | {m.daemon.ocr_pages} | "
              f"{m.daemon.drop_to_result:.2f} | {'n/a' if claim is None else f'{claim:.2f}'} | "
              f"{m.baseline:.2f} | {m.parts} | {m.ratio:.2f} x |", flush=True)


def ratio_row(m: Measured, what: str, target: float) -> Row:
    return (f"{what} ({m.times()}; baseline {m.baseline:.2f} s): claim->result / baseline",
            f"{m.ratio:.2f} x", f"<= {target:g} x", m.ratio <= target)


# ---- main ----------------------------------------------------------------------------------

def book_side_by_side(env: Env, name: str, source: Path, dpi: int, folder: Path) -> Measured:
    """The loop, plus the OCR of the pages `auto` found without a text layer (a book's
    cover is a picture), by the same tesseract as the scans' baseline."""
    m = text_side_by_side(env, name, source)
    if not m.daemon.ocr_numbers:
        return m
    doc = pypdfium2.PdfDocument(source)
    pngs = [render_png(doc, n - 1, dpi, folder / f"{source.stem}-{n}.png")
            for n in m.daemon.ocr_numbers]
    doc.close()
    ocr = tesseract_pair(pngs, dpi)
    return Measured(name, m.daemon, m.baseline + ocr,
                    f"{m.parts} + OCR of {len(pngs)} pages {ocr:.2f} s")


def books(env: Env, measured: list[Measured], dpi: int, folder: Path) -> list[Row]:
    rows: list[Row] = []
    for name in BOOKS:
        path = corpus_book(name)
        what = f"large PDF, {name}, auto: daemon / (pypdfium2 loop + OCR of its scanned pages)"
        if path is None:
            rows.append((what, f"not measured: no corpus at {CORPUS}", "<= 2 x", None))
            continue
        m = book_side_by_side(env, name, path, dpi, folder)
        measured.append(m)
        rows.append(ratio_row(m, f"large PDF, {name} ({m.daemon.pages} pages, "
                                 f"{m.daemon.ocr_pages} OCRed), auto: daemon / (pypdfium2 loop "
                                 "+ OCR of those pages)", 2))
    return rows


def large(env: Env, peak: Peak, text: Path, mixed: Path, pngs: list[Path], args: Any,
          measured: list[Measured]) -> list[Row]:
    n, every = args.text_pages, args.every
    t = text_side_by_side(env, f"text, {n} pages", text, peak)
    m = mixed_side_by_side(env, f"mixed, {n} pages, every {every}th a scan", mixed, pngs,
                           every, args.dpi, peak)
    measured += [t, m]
    rate = t.daemon.pages / t.seconds
    return [
        (f"large PDF, {n}-page text PDF, auto: pages/s through the daemon, claim->result "
         f"({t.times()})", f"{rate:,.0f}", ">= 500", rate >= 500),
        ratio_row(t, f"large PDF, {n}-page text PDF, auto: daemon / pypdfium2 loop", 2),
        ratio_row(m, f"large PDF, {n} pages, every {every}th a {args.dpi}-dpi scan "
                     f"({len(pngs)} OCR pages), auto: daemon / (text loop + OCR by 2 "
                     "tesseract processes)", 1.10),
        (f"peak worker RSS, {n}-page text and mixed PDFs (largest Python process; sum over "
         f"the worker's processes {peak.summed / MB:.0f} MB)", f"{peak.largest / MB:.0f} MB",
         "<= 250 MB", peak.largest <= 250 * MB),
    ]


def fan_out(folder: Path, pngs: list[Path], args: Any, warm: Path,
            measured: list[Measured]) -> list[Row]:
    """A pure scan, engine tesseract, against the same images at 2 tesseract processes (just
    before and just after the daemon's run: their mean)."""
    shots = pngs[:args.scan_pages]
    scan = scan_pdf(shots, args.dpi, folder / "scan.pdf")
    with daemon("tesseract", args.dpi, warm) as (env, _peak):
        before = tesseract_pair(shots, args.dpi)
        timing = through_daemon(env, scan)
        after = tesseract_pair(shots, args.dpi)
    m = Measured(f"scan, {len(shots)} pages", timing, (before + after) / 2,
                 f"OCR {before:.2f} / {after:.2f} s")
    measured.append(m)
    return [ratio_row(m, f"OCR fan-out, {len(shots)} scanned pages at {args.dpi} dpi, "
                         "engine tesseract: daemon / 2 tesseract processes", 1.15)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--text-pages", type=int, default=2000)
    parser.add_argument("--every", type=int, default=20, help="every n-th page a scan")
    parser.add_argument("--scan-pages", type=int, default=20, help="the pure scan's pages")
    parser.add_argument("--dpi", type=int, default=120, help="the scans' resolution")
    args = parser.parse_args()
    print(f"# large PDFs, {datetime.now():%Y-%m-%d %H:%M}: {machine()}")
    source = corpus_book("freeculture.pdf") or FALLBACK
    print(f"text pages from {source.name}; scans at {args.dpi} dpi, tesseract renders at it")
    measured: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="ocrd-largepdf-") as tmp:
        folder = Path(tmp)
        text = repeated_text(source, args.text_pages, folder / f"text{args.text_pages}.pdf")
        mixed, pngs = with_scans(text, args.every, args.dpi, folder)
        warm = warm_up_pdf(folder, args.dpi)
        with daemon("auto", args.dpi, warm) as (env, peak):
            rows = books(env, measured, args.dpi, folder)
            rows += large(env, peak, text, mixed, pngs, args, measured)
        rows += fan_out(folder, pngs, args, warm, measured)
    print_table(measured)
    emit(rows)


if __name__ == "__main__":
    main()
