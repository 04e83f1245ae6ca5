"""Capacity per worker process, per engine: pages a minute through the whole daemon with one
worker process (prefork, concurrency 1), for planning how many processes and hosts a load
needs (README, Operations: several hosts).

- pdftext: a generated text PDF (chunked as the defaults chunk it);
- tesseract: a real letter-size scan (tests/resources/linn.pdf) repeated, read at 300 dpi;
- gemini is not measured here: its capacity is the fleet's `requests_per_minute` and
  `tokens_per_minute`, shared by every process (bench/gemini_cost.py measures its cost).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness import ROOT, machine, stack, timed_result
from pypdf import PdfReader, PdfWriter
from rows import emit

from tests.support.pdfs import drawn_page, image_pdf, make_text_pdf, page_text


def one_process(engine: str, source: Path, warm_up: Path) -> float:
    """Seconds from the drop of ``source`` to its result, with one worker process (a small
    document first, so that start-up is not counted)."""
    with stack(prefix=f"cap{engine}:", watch={"engine": engine},
               workers={"concurrency": 1, "pool": "prefork"},
               logging={"level": "warning", "format": "json"}) as (env, _redis):
        env.start("watch")
        env.start("worker", "--concurrency", "1", "--pool", "prefork")
        env.drop(warm_up)
        env.wait_result(warm_up.stem, timeout=300)
        env.drop(source)
        _result, seconds = timed_result(env, source.stem, timeout=1800)
        return seconds


def repeated(page: Path, times: int, out: Path) -> Path:
    """A PDF of ``page``'s first page ``times`` times (one real scan, many pages)."""
    reader = PdfReader(page)
    writer = PdfWriter()
    for _ in range(times):
        writer.add_page(reader.pages[0])
    with open(out, "wb") as fh:
        writer.write(fh)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-pages", type=int, default=500)
    parser.add_argument("--scan-pages", type=int, default=6)
    args = parser.parse_args()
    print(f"# capacity, one worker process per engine: {machine()}")
    rows: list[tuple[str, str, str, bool | None]] = []
    with tempfile.TemporaryDirectory(prefix="ocrd-capacity-") as tmp:
        text = make_text_pdf(Path(tmp) / "text.pdf",
                             [page_text(n, words=200) for n in range(1, args.text_pages + 1)])
        scans = repeated(ROOT / "tests" / "resources" / "linn.pdf", args.scan_pages,
                         Path(tmp) / "scan.pdf")
        print("| engine | pages | seconds | pages per minute per worker process |")
        print("|---|---|---|---|")
        warm_ups = {"pdftext": make_text_pdf(Path(tmp) / "warm-text.pdf", ["warm up"]),
                    "tesseract": image_pdf(Path(tmp) / "warm-scan.pdf",
                                           [drawn_page("warm up", dpi=150)])}
        for engine, source, pages in (("pdftext", text, args.text_pages),
                                      ("tesseract", scans, args.scan_pages)):
            seconds = one_process(engine, source, warm_ups[engine])
            per_minute = pages / seconds * 60
            print(f"| {engine} | {pages} | {seconds:.1f} | {per_minute:,.0f} |")
            rows.append((f"capacity, {engine}: pages per minute, one worker process",
                         f"{per_minute:,.0f}", "", None))
    emit(rows)


if __name__ == "__main__":
    main()
