"""Fan-out efficiency: a 200-page PDF through a sleeping engine, chunked, against the ideal
(ceil(chunks / concurrency) x latency + split time) and against the same PDF unchunked.

The unchunked runs (200 pages one after another: 20 s and 100 s of sleep) each run on their
own stack beside the chunked runs rather than after them, so the whole takes about as long as
the slowest of them. They are sleep-bound (a thread sleeping per page, a millisecond of text
extraction): the chunked runs, which use the CPU at their ends, share it with two idle stacks.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import machine, stack
from rows import emit

from ocr_daemon.pipeline.plan import in_chunks
from tests.support.engines import use_sleeping
from tests.support.pdfs import make_text_pdf, page_text


def seconds(result: dict[str, Any]) -> float:
    start = datetime.fromisoformat(result["started_at"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(result["finished_at"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def run(source: Path, chunked: bool, per_page: float, concurrency: int) -> float:
    big = 10**9
    watch = ({"chunk_pages": 10, "chunk_threshold_pages": 10} if chunked else
             {"chunk_threshold_pages": big, "chunk_threshold_bytes": big})
    with stack(watch=watch, logging={"level": "warning", "format": "json"}) as (env, _redis):
        use_sleeping(env, per_page=per_page)
        env.start("worker", "--queues", "documents", "--concurrency", "2", "--pool", "threads")
        env.start("worker", "--queues", "chunks", "--concurrency", str(concurrency),
                  "--pool", "threads", "--name", "chunks@%h")
        env.start("watch")
        with tempfile.TemporaryDirectory() as tmp:  # warm up: workers connected, code loaded
            pages = 20 if chunked else 1  # two chunks; one page (at up to 0.5 s a page)
            warm = make_text_pdf(Path(tmp) / "warmup.pdf",
                                 [page_text(n) for n in range(1, pages + 1)])
            env.drop(warm)
            env.wait_result("warmup", timeout=120)
        env.drop(source)
        return seconds(env.wait_result(source.stem, timeout=600))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--per-page", default="0.1,0.5",
                        help="engine seconds per page, one run each (comma-separated): 0.1 is "
                             "a stress case, 0.5 (5 s per 10-page request) a remote OCR API")
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    rows: list[tuple[str, str, str, bool | None]] = []
    print(f"# fan-out, {datetime.now():%Y-%m-%d}: {machine()}")
    print("| pages | chunks | threads | s per chunk | split s (none now) | ideal s | chunked s | "
          "/ ideal | unchunked s | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        source = make_text_pdf(Path(tmp) / "fanout.pdf",
                               [page_text(n) for n in range(1, args.pages + 1)])
        # Chunks are page ranges of the original, read in place: nothing is split up front.
        ranges = in_chunks(list(range(1, args.pages + 1)), 10)
        split = 0.0
        latencies = [float(x) for x in args.per_page.split(",")]
        with ThreadPoolExecutor(len(latencies)) as pool:  # the unchunked runs, beside
            unchunked_runs = [pool.submit(run, source, False, p, args.concurrency)
                              for p in latencies]
            chunked_runs = [run(source, True, p, args.concurrency) for p in latencies]
            unchunked_times = [f.result() for f in unchunked_runs]
        for per_page, chunked, unchunked in zip(latencies, chunked_runs, unchunked_times,
                                                strict=True):
            latency = 10 * per_page
            ideal = math.ceil(len(ranges) / args.concurrency) * latency + split
            print(f"| {args.pages} | {len(ranges)} | {args.concurrency} | {latency:.1f} | "
                  f"{split:.3f} | {ideal:.2f} | {chunked:.2f} | {chunked / ideal:.2f} | "
                  f"{unchunked:.1f} | {unchunked / chunked:.1f} |", flush=True)
            rows += [
                (f"fan-out, {args.pages} pages in {len(ranges)} chunks, {latency:g} s per "
                 f"chunk: wall / ideal ({chunked:.2f} / {ideal:.2f} s)",
                 f"{chunked / ideal:.2f} x", "<= 1.15 x", chunked / ideal <= 1.15),
                (f"fan-out, {latency:g} s per chunk: speed-up against unchunked",
                 f"{unchunked / chunked:.1f} x", ">= 15 x", unchunked / chunked >= 15),
            ]
    emit(rows)


if __name__ == "__main__":
    main()
