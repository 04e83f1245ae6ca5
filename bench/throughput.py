"""Small-document throughput: N one-page text PDFs end to end (watcher, Redis, workers)
against a single-process sequential loop doing the same extraction and writing the same
text and JSON files, measured in the same run."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

from harness import drop_all, machine, small_documents, wait_results
from rows import emit

from ocr_daemon import atomic
from ocr_daemon.formats import pdf
from ocr_daemon.formats.sniff import sniff
from tests.support.pdfs import make_text_pdf, page_text


def make_inputs(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True)
    return [make_text_pdf(folder / f"t{n:04d}.pdf", [page_text(n)]) for n in range(count)]


def sequential(inputs: list[Path], out: Path) -> float:
    """The same work without orchestration: sniff, validate, extract, write .txt and .json."""
    out.mkdir()
    started = time.perf_counter()
    for source in inputs:
        mime = sniff(source)
        pages = pdf.count_pages(source, 10_000)
        texts = pdf.page_texts(source, list(range(pages)))
        atomic.write_text(out / f"{source.stem}.txt", "\f".join(texts))
        atomic.write_json(out / f"{source.stem}.json", {
            "source": {"name": source.name, "mime": mime, "pages": pages},
            "pages": [{"number": i + 1, "text": t, "engine": "pdftext"}
                      for i, t in enumerate(texts)]})
    return time.perf_counter() - started


def daemon(inputs: list[Path], settle: float) -> float:
    """Seconds from the drop of all files to the last result, through `ocr-daemon run`."""
    with small_documents(inputs, settle) as (env, _redis, staging):
        env.run_daemon()
        started = time.perf_counter()
        drop_all(env, staging)
        wait_results(env, len(inputs))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp) / "in", args.docs)
        loop = sequential(inputs, Path(tmp) / "loop")
        through = daemon(inputs, args.settle)
    print(f"# throughput, {datetime.now():%Y-%m-%d}: {machine()}")
    print(f"{args.docs} one-page text PDFs; daemon: `ocr-daemon run`, {os.cpu_count()} prefork "
          f"worker processes, settle_seconds {args.settle} (included)")
    print("| path | seconds | documents/s | ratio |")
    print("|---|---|---|---|")
    print(f"| sequential loop, one process | {loop:.2f} | {args.docs / loop:.1f} | 1.00 |")
    print(f"| daemon end to end | {through:.2f} | {args.docs / through:.1f} | "
          f"{loop / through:.2f} x the loop (target >= 1.6) |")
    emit([(f"small documents: daemon / sequential loop ({args.docs} one-page PDFs, "
           f"{args.docs / through:.0f} vs {args.docs / loop:.0f} docs/s)",
           f"{loop / through:.2f} x", ">= 1.6 x", loop / through >= 1.6)])


if __name__ == "__main__":
    main()
