"""Peak worker memory while splitting and processing a 2,000-page PDF built from real pages,
and Redis memory per in-flight document (a 10- and a 2,000-page document queued, a 2,000-page
document fanned out)."""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import ROOT, machine, stack, wait_for
from pypdf import PdfReader, PdfWriter
from rows import emit

REAL = ROOT / "tests" / "resources" / "pdflatex-4-pages.pdf"


def real_pages(path: Path, pages: int) -> Path:
    """A PDF of ``pages`` real pages: the 4-page pdfLaTeX sample over and over."""
    writer = PdfWriter()
    reader = PdfReader(REAL)
    for i in range(pages):
        writer.add_page(reader.pages[i % len(reader.pages)])
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == p:
                    todo.append(int(entry.name))
    return out


def peak_worker_rss(pages: int) -> tuple[int, float]:
    """Largest peak RSS (VmHWM) of any worker process over the whole document, and seconds."""
    # Text pages planned like OCR pages (10 a chunk): the footprint of a fanned-out document.
    watch = {"chunk_pages": 10, "text_chunk_pages": 10, "chunk_threshold_pages": 10,
             "max_pages": 100_000}
    with tempfile.TemporaryDirectory() as tmp, stack(
            watch=watch, workers={"concurrency": 2},
            logging={"level": "warning", "format": "json"}) as (env, _redis):
        source = real_pages(Path(tmp) / "thick.pdf", pages)
        worker = env.start("worker")
        env.start("watch")
        peak: dict[int, int] = {}
        started = time.monotonic()
        env.drop(source)
        done = env.outbox / "thick.json"
        while not done.exists():
            for pid in _tree(worker.pid):
                try:
                    peak[pid] = max(peak.get(pid, 0), _status(pid, "VmHWM"))
                except OSError:
                    continue
            time.sleep(0.05)
            if time.monotonic() - started > 900:
                raise TimeoutError("the 2,000-page document did not finish")
        seconds = time.monotonic() - started
        return max(peak.values()), seconds


def keys_bytes(client: Any) -> int:
    """Bytes Redis holds for all keys and values (its key table's own slots aside)."""
    return sum(int(client.memory_usage(key, samples=0) or 0)
               for key in client.scan_iter(count=1000))


def redis_bytes_per_document(sizes: list[int], count: int, planned: bool) -> dict[int, float]:
    """Redis memory added per document in flight, for documents of each of ``sizes`` pages
    (``count`` of each, dropped size after size on one fresh Redis): the sum of `MEMORY
    USAGE` over every key (exact, SAMPLES 0) after each batch minus before it. Unlike
    `used_memory`, it does not jump when Redis doubles its key table, which made a few
    documents' figure swing by half.

    planned=False: claimed and queued, no worker running (state + one message).
    planned=True: a documents worker has planned it and fanned out its chunks, and no chunk
    worker runs (state, chunk states, chord, one message per chunk): the largest footprint.
    """
    # Text pages planned like OCR pages (10 a chunk): the footprint of a fanned-out document.
    watch = {"chunk_pages": 10, "text_chunk_pages": 10, "chunk_threshold_pages": 10,
             "max_pages": 100_000}
    with tempfile.TemporaryDirectory() as tmp, stack(
            watch=watch, logging={"level": "warning", "format": "json"}) as (env, redis):
        if planned:
            env.start("worker", "--queues", "documents", "--concurrency", "2")
        env.start("watch")
        client = redis.client()
        window = env.cfg.watches[0].chunks_in_flight
        expected_chunks = 0  # chunk messages queued by the documents so far (planned)

        def queued_chunks(pages: int) -> int:  # what one planned document leaves queued
            return min(math.ceil(pages / watch["chunk_pages"]), window)

        def settled(n: int, chunks: int) -> bool:
            ids = client.zrange("bench:active", 0, -1)
            if len(ids) != n:
                return False
            if not planned:
                return bool(client.llen("bench:documents") == n)
            return bool(client.llen("bench:chunks") == chunks)

        sources = {p: real_pages(Path(tmp) / f"doc{p}.pdf", p) for p in sizes}
        warm = sources[min(sizes)]
        env.drop(warm, name="warmup.pdf")  # the processes' own keys exist before we measure
        expected_chunks += queued_chunks(min(sizes))
        wait_for(lambda: settled(1, expected_chunks), 120, what="warm-up document")
        time.sleep(1)
        in_flight = 1
        out = {}
        for pages in sizes:
            before = keys_bytes(client)
            for i in range(count):
                env.drop(sources[pages], name=f"doc{pages}-{i}.pdf")
            in_flight += count
            expected_chunks += count * queued_chunks(pages)
            wait_for(lambda n=in_flight, c=expected_chunks: settled(n, c), 300, interval=0.5,
                     what="documents in flight")
            time.sleep(1)
            out[pages] = (keys_bytes(client) - before) / count
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--docs", type=int, default=10,
                        help="documents of each size held in flight")
    args = parser.parse_args()
    # Bytes, not seconds: the three measurements run side by side, each on its own stack.
    with ThreadPoolExecutor(3) as pool:
        rss = pool.submit(peak_worker_rss, args.pages)
        queued_run = pool.submit(redis_bytes_per_document, sorted({10, args.pages}),
                                 args.docs, False)
        planned_run = pool.submit(redis_bytes_per_document, [args.pages], args.docs, True)
        (peak, seconds), queued, planned = rss.result(), queued_run.result(), planned_run.result()
    print(f"# memory, {datetime.now():%Y-%m-%d}: {machine()}")
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| peak worker RSS, {args.pages}-page PDF (split + {args.pages // 10} chunks, "
          f"{seconds:.0f} s beside the Redis measurements) | {peak / 2**20:.0f} MB | <= 250 MB |")
    for pages, value in queued.items():
        print(f"| Redis per queued document, {pages} pages ({args.docs} documents) | "
              f"{value / 1024:.1f} KB | <= 50 KB |")
    for pages, value in planned.items():
        print(f"| Redis per document fanned out, {pages} pages ({pages // 10} chunks, "
              f"a window of 20 queued) | {value / 1024:.1f} KB | <= 50 KB |")
    emit([
        (f"peak worker RSS, {args.pages}-page PDF", f"{peak / 2**20:.0f} MB", "<= 250 MB",
         peak <= 250 * 2**20),
        ("Redis per queued document (any size)", f"{max(queued.values()) / 1024:.1f} KB",
         "<= 50 KB", max(queued.values()) <= 50 * 1024),
        (f"Redis per fanned-out document, {args.pages} pages",
         f"{planned[args.pages] / 1024:.1f} KB", "<= 50 KB", planned[args.pages] <= 50 * 1024),
    ])


if __name__ == "__main__":
    main()
