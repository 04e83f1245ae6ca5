"""Benchmark: the searchable PDF output against `ocrmypdf --output-type pdf`, and its cost.

    .venv/bin/python bench/searchable_pdf.py [--jobs N] [--rounds R] [--quick] [--pages P]

The scans of bench/tesseract_vs_ocrmypdf.py (phototest, phototest_2, linn, the 4-page typeset
scan) go through three paths; the table gives pages per minute and output size:

- ours, pdf: what workers and the ending do for a watch with ``outputs: [text, json, pdf]``:
  ``TesseractEngine`` asked for layers (one Tesseract run per page writes the text and the
  text-only PDF page), N processes taking one page at a time, then the ending's assembly of
  each document's PDF (``searchable.assemble``: the original's bytes plus an incremental
  update, or image frames as pages);
- ours, text only: the same pages without layers and without assembly (today's default);
- ocrmypdf: ``ocrmypdf --output-type pdf --jobs N`` once per input file (its own virtualenv,
  bench/.venv by default, as in bench/tesseract_vs_ocrmypdf.py).

Then the ending alone on a long document: a P-page (default 2,000) scanned PDF given one
Tesseract layer per page, assembled in a fresh process: seconds and peak RSS (the ending
runs under a 60 s lock; memory must not grow with the page count).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pypdf import PdfReader, PdfWriter  # noqa: E402
from rows import emit  # noqa: E402
from tesseract_vs_ocrmypdf import (  # noqa: E402
    RESOURCES,
    Doc,
    build_pages,
    install_ocrmypdf,
    machine,
)

from ocr_daemon.config import TesseractConfig  # noqa: E402
from ocr_daemon.engines.base import Page, PageRequest  # noqa: E402
from ocr_daemon.engines.tesseract import TesseractEngine  # noqa: E402
from ocr_daemon.pipeline.searchable import assemble  # noqa: E402


def _page(job: tuple[str, str, int, str | None]) -> str:
    path, mime, index, layers = job
    engine = TesseractEngine(TesseractConfig())
    request = PageRequest(Path(path), mime, (Page(index + 1, index),), layers=bool(layers))
    extraction = engine.extract(request)
    if layers:
        for number, data in extraction.layers.items():
            Path(layers, f"{number:06d}.pdf").write_bytes(data)
    return extraction.pages[0].text


def cpu_seconds() -> float:
    """User + system CPU of this process and of every child reaped so far (pool workers and
    their Tesseracts): on a machine shared with other work, wall time mostly measures them."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


Result = tuple[float, float, int]  # wall seconds, CPU seconds, bytes of PDF written


def run_ours(docs: list[Doc], jobs: int, work: Path, pdf_out: bool) -> Result:
    """Every page (and, with ``pdf_out``, every document's PDF)."""
    folders = []
    for i, _ in enumerate(docs):
        folder = work / f"layers-{i}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        folders.append(folder)
    tasks = [(str(d.path), d.mime, p, str(folders[i]) if pdf_out else None)
             for i, d in enumerate(docs) for p in range(len(d.truths))]
    started, cpu = time.perf_counter(), cpu_seconds()
    with ProcessPoolExecutor(jobs) as pool:
        texts = list(pool.map(_page, tasks))
    size = 0
    if pdf_out:
        it = iter(texts)
        for d, folder in zip(docs, folders, strict=True):
            pages: list[dict[str, Any]] = [
                {"number": n, "text": next(it), "engine": "tesseract"}
                for n in range(1, len(d.truths) + 1)]
            target = work / f"ours-{folder.name}.pdf"
            with open(target, "wb") as fh:
                _, warnings = assemble(d.path, d.mime, len(d.truths), pages,
                                       lambda n, f=folder: f / f"{n:06d}.pdf", fh)
            if warnings:
                raise SystemExit(f"{d.name}: {warnings}")
            size += target.stat().st_size
    return time.perf_counter() - started, cpu_seconds() - cpu, size


def run_ocrmypdf(program: Path, docs: list[Doc], jobs: int, work: Path) -> Result:
    started, cpu = time.perf_counter(), cpu_seconds()
    size = 0
    for i, d in enumerate(docs):
        target = work / f"ocrmypdf-{i}.pdf"
        dpi = ["--image-dpi", str(d.image_dpi)] if d.image_dpi else []
        done = subprocess.run(
            [str(program), "--output-type", "pdf", "--jobs", str(jobs), "--quiet", *dpi,
             str(d.path), str(target)], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"ocrmypdf failed on {d.name}: {done.stderr[-2000:]}")
        size += target.stat().st_size
    return time.perf_counter() - started, cpu_seconds() - cpu, size


def _long_ending(job: tuple[str, str, int]) -> tuple[float, float, int, int]:
    """In a fresh process: assemble the long PDF; wall and CPU seconds, peak RSS before and
    after (KiB)."""
    source, layer, count = job
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu = cpu_seconds()
    pages: list[dict[str, Any]] = [{"number": n, "text": "x", "engine": "tesseract"}
                                   for n in range(1, count + 1)]
    started = time.perf_counter()
    with open(source + ".out.pdf", "wb") as fh:
        layered, warnings = assemble(Path(source), "application/pdf", count, pages,
                                     lambda n: Path(layer), fh)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    if layered != count or warnings:
        raise SystemExit(f"long document: {layered} of {count} pages layered: {warnings[:3]}")
    return seconds, cpu, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def long_document(work: Path, count: int) -> tuple[float, float, int, int, int]:
    """A ``count``-page scan (linn's page, its image shared) with linn's real layer."""
    reader = PdfReader(RESOURCES / "linn.pdf")
    writer = PdfWriter()
    for _ in range(count):
        writer.add_page(reader.pages[0])
    source = work / "long.pdf"
    with open(source, "wb") as fh:
        writer.write(fh)
    layer = work / "linn-layer.pdf"
    engine = TesseractEngine(TesseractConfig())
    request = PageRequest(RESOURCES / "linn.pdf", "application/pdf", (Page(1, 0),),
                          layers=True)
    layer.write_bytes(engine.extract(request).layers[1])
    with ProcessPoolExecutor(1) as pool:
        seconds, cpu, before, after = pool.submit(_long_ending,
                                                  (str(source), str(layer), count)).result()
    out = Path(str(source) + ".out.pdf")
    check = subprocess.run(["qpdf", "--check", str(out)], capture_output=True, text=True)
    if shutil.which("qpdf") and check.returncode != 0:
        raise SystemExit(f"qpdf --check of the long PDF failed: {check.stdout[-1000:]}")
    return seconds, cpu, before, after, out.stat().st_size - source.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--venv", type=Path, default=ROOT / "bench" / ".venv")
    parser.add_argument("--rounds", type=int, default=2,
                        help="times every path runs, interleaved; the fastest counts")
    parser.add_argument("--quick", action="store_true", help="the two phototest pages only")
    parser.add_argument("--pages", type=int, default=2000, help="pages of the long document")
    parser.add_argument("--long-only", action="store_true",
                        help="only the ending of the long document")
    args = parser.parse_args(argv)
    if args.long_only:
        with tempfile.TemporaryDirectory(prefix="ocrd-bench-pdf-") as tmp:
            secs, cpu, before, after, added = long_document(Path(tmp), args.pages)
        print(f"ending of a {args.pages}-page scan: {secs:.1f} s ({cpu:.1f} s CPU), peak RSS "
              f"{after / 1024:.0f} "
              f"MiB (process at start {before / 1024:.0f} MiB), update {added / 1024:.0f} KiB; "
              f"load average {os.getloadavg()[0]:.2f}")
        return 0
    program = install_ocrmypdf(args.venv)
    version = subprocess.run([str(program), "--version"], capture_output=True,
                             text=True).stdout.strip()
    header = machine()
    with tempfile.TemporaryDirectory(prefix="ocrd-bench-pdf-") as tmp:
        work = Path(tmp)
        docs = build_pages(work, args.quick)
        pages = sum(len(d.truths) for d in docs)
        runs = {
            "pdf": lambda: run_ours(docs, args.jobs, work, True),
            "text": lambda: run_ours(docs, args.jobs, work, False),
            "ocrmypdf": lambda: run_ocrmypdf(program, docs, args.jobs, work),
        }
        best: dict[str, Result] = {}
        for r in range(args.rounds):
            for key in (list(runs) if r % 2 == 0 else list(reversed(runs))):
                print(f"round {r + 1}/{args.rounds}: {key} on {pages} pages ...", flush=True)
                got = runs[key]()
                print(f"  {got[0]:.1f} s wall, {got[1]:.1f} s CPU", flush=True)
                best[key] = got if key not in best else (
                    min(got[0], best[key][0]), min(got[1], best[key][1]), got[2])
        print(f"long document: assembling {args.pages} pages ...", flush=True)
        long_secs, long_cpu, rss_before, rss_after, added = long_document(work, args.pages)
    labels = {"pdf": "ours, outputs [text, json, pdf]", "text": "ours, text only (default)",
              "ocrmypdf": f"ocrmypdf --output-type pdf --jobs {args.jobs}"}
    print()
    print("\n".join(header))
    print(f"ocrmypdf {version}; {pages} pages: " + ", ".join(d.name for d in docs))
    print(f"load average at end {os.getloadavg()[0]:.2f}; best of {args.rounds} round(s)")
    print()
    print(f"| {'path':<40} | {'pages/min':>9} | {'seconds':>8} | {'CPU s':>7} "
          f"| {'output KiB':>10} |")
    print(f"|{'-' * 42}|{'-' * 11}|{'-' * 10}|{'-' * 9}|{'-' * 12}|")
    for key, (secs, cpu, size) in best.items():
        kib = f"{size / 1024:.0f}" if key != "text" else "-"
        print(f"| {labels[key]:<40} | {60 * pages / secs:>9.1f} | {secs:>8.1f} | {cpu:>7.1f} "
              f"| {kib:>10} |")
    extra_wall = 100 * (best["pdf"][0] - best["text"][0]) / best["text"][0]
    extra = 100 * (best["pdf"][1] - best["text"][1]) / best["text"][1]
    ours_ppm = 60 * pages / best["pdf"][0]
    theirs_ppm = 60 * pages / best["ocrmypdf"][0]
    print()
    print(f"pdf output adds {extra:+.1f} % CPU time ({extra_wall:+.1f} % wall time) to the "
          "text-only run of the same pages")
    print(f"ending of a {args.pages}-page scan: {long_secs:.1f} s ({long_cpu:.1f} s CPU), "
          f"peak RSS "
          f"{rss_after / 1024:.0f} MiB (process at start {rss_before / 1024:.0f} MiB), "
          f"update {added / 1024:.0f} KiB")
    emit([
        (f"searchable PDF / ocrmypdf --output-type pdf, pages per minute ({args.jobs} jobs, "
         f"{ours_ppm:.1f} vs {theirs_ppm:.1f})", f"{ours_ppm / theirs_ppm:.2f} x", None, None),
        ("searchable PDF size / ocrmypdf's (same scans)",
         f"{best['pdf'][2] / best['ocrmypdf'][2]:.2f} x", None, None),
        ("CPU time pdf output adds to a tesseract document (wall time)",
         f"{extra:+.1f} % ({extra_wall:+.1f} %)", "<= 10 %", extra <= 10.0),
        (f"ending of a {args.pages}-page searchable PDF (wall, CPU seconds; peak RSS)",
         f"{long_secs:.1f} s, {long_cpu:.1f} s; {rss_after / 1024:.0f} MiB", None, None),
    ])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
