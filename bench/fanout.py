"""Fan-out efficiency: a 200-page PDF through a sleeping engine, chunked, against the ideal
(ceil(chunks / concurrency) x latency + split time) and against the same PDF unchunked."""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import machine, stack
from rows import emit

from ocr_daemon import pdf
from ocr_daemon.planning import page_ranges
from ocr_daemon.testing import make_text_pdf, page_text


def seconds(result: dict[str, Any]) -> float:
    start = datetime.fromisoformat(result["started_at"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(result["finished_at"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def run(source: Path, chunked: bool, per_page: float, concurrency: int) -> float:
    big = 10**9
    watch = ({"chunk_pages": 10, "chunk_threshold_pages": 10} if chunked else
             {"chunk_threshold_pages": big, "chunk_threshold_bytes": big})
    with stack(watch=watch, logging={"level": "warning", "format": "json"}) as (env, _redis):
        common = ["--per-page", str(per_page), "--pool", "threads"]
        env.start("worker", "--queues", "documents", "--concurrency", "2", *common,
                  module="ocr_daemon.testing")
        env.start("worker", "--queues", "chunks", "--concurrency", str(concurrency), *common,
                  "--name", "chunks@%h", module="ocr_daemon.testing")
        env.start("watch")
        with tempfile.TemporaryDirectory() as tmp:  # warm up: workers connected, code loaded
            warm = make_text_pdf(Path(tmp) / "warmup.pdf", [page_text(n) for n in range(1, 21)])
            env.drop(warm)
            env.wait_result("warmup", timeout=120)
        env.drop(source)
        return seconds(env.wait_result(source.stem, timeout=600))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--per-page", type=float, default=0.1, help="engine seconds per page")
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = make_text_pdf(Path(tmp) / "fanout.pdf",
                               [page_text(n) for n in range(1, args.pages + 1)])
        ranges = page_ranges(args.pages, 10)
        started = time.perf_counter()
        pdf.split(source, ranges, [Path(tmp) / f"c{i}.pdf" for i in range(len(ranges))])
        split = time.perf_counter() - started
        latency = 10 * args.per_page
        ideal = math.ceil(len(ranges) / args.concurrency) * latency + split
        chunked = run(source, True, args.per_page, args.concurrency)
        unchunked = run(source, False, args.per_page, args.concurrency)
    print(f"# fan-out, {datetime.now():%Y-%m-%d}: {machine()}")
    print(f"{args.pages} pages, {len(ranges)} chunks of 10, {args.concurrency} threads on queue "
          f"chunks, engine {args.per_page:.2f} s/page ({latency:.2f} s per chunk)")
    print("| measure | seconds | ratio |")
    print("|---|---|---|")
    print(f"| split time | {split:.3f} | |")
    print(f"| ideal: ceil(chunks/concurrency) x latency + split | {ideal:.3f} | 1.00 |")
    print(f"| chunked wall time | {chunked:.3f} | {chunked / ideal:.2f} x ideal (target <= 1.15) |")
    print(f"| unchunked wall time | {unchunked:.3f} | chunked is {unchunked / chunked:.1f} x "
          f"faster (target >= 15) |")
    emit([
        (f"fan-out: {args.pages} pages, {len(ranges)} chunks, {args.concurrency} threads, "
         f"{latency:.1f} s per chunk: wall / ideal", f"{chunked / ideal:.2f} x", "<= 1.15 x",
         chunked / ideal <= 1.15),
        ("fan-out: speed-up against the same document unchunked",
         f"{unchunked / chunked:.1f} x", ">= 15 x", unchunked / chunked >= 15),
    ])


if __name__ == "__main__":
    main()
