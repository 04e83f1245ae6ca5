"""Pickup latency (file closed -> task queued), p50 and p99, with inotify and with polling;
and the time to queue 1,000 files dropped at once."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from harness import machine, read_json, stack, wait_for
from rows import emit

from tests.support.pdfs import make_text_pdf


def queued_at(processing: Path) -> dict[str, float]:
    """Original name -> queue time, read from each claim's dispatch record."""
    out = {}
    for record in processing.iterdir():
        try:
            name = read_json(record / "manifest.json")["name"]
            stamp = read_json(record / "dispatch.json")["queued_at"]
        except (OSError, ValueError, KeyError):
            continue
        out[name] = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return out


def measure(files: int, gap: float, bulk: int) -> tuple[list[float], list[float], float]:
    """One watcher (no worker: claims stay, with their records) on three watches: inotify and
    polling pickup latencies, files dropped alternately one by one; then ``bulk`` files
    renamed into the third watch's inbox at once, and the seconds until all are queued."""
    common = {"engine": "pdftext", "settle_seconds": 1.0}
    with tempfile.TemporaryDirectory() as tmp, stack(logging={"level": "warning",
                                                              "format": "json"}) as (env, _r):
        roots = {kind: env.tmp / kind for kind in ("inotify", "polling", "bulk")}
        env.write_config(watches=[
            {"name": "inotify", "root": str(roots["inotify"]), **common},
            {"name": "polling", "root": str(roots["polling"]), "polling": True,
             "poll_interval": 0.5, **common},
            {"name": "bulk", "root": str(roots["bulk"]), **common}])
        data = make_text_pdf(Path(tmp) / "p.pdf", ["pickup"]).read_bytes()
        staging = env.tmp / "staging"
        staging.mkdir()
        for n in range(bulk):
            (staging / f"b{n:04d}.pdf").write_bytes(data)
        listener = env.listener()
        env.start("watch", notify=listener)
        listener.wait("READY=1")
        closed: dict[str, dict[str, float]] = {"inotify": {}, "polling": {}}
        for n in range(files):
            for kind, times in closed.items():
                name = f"p{n:04d}.pdf"
                with open(roots[kind] / "inbox" / name, "wb") as fh:
                    fh.write(data)
                times[name] = time.time()
                time.sleep(gap / 2)
        latencies = []
        for kind, times in closed.items():
            processing = roots[kind] / "processing"
            wait_for(lambda p=processing: len(queued_at(p)) == files, 120, what="all queued")
            queued = queued_at(processing)
            latencies.append([queued[name] - times[name] for name in times])
        processing = roots["bulk"] / "processing"
        started = time.time()
        for path in sorted(staging.iterdir()):
            os.rename(path, roots["bulk"] / "inbox" / path.name)
        wait_for(lambda: len(list(processing.iterdir())) == bulk
                 and len(queued_at(processing)) == bulk, 300, interval=0.2, what="all queued")
        return latencies[0], latencies[1], max(queued_at(processing).values()) - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=100, help="files per pickup run")
    parser.add_argument("--bulk", type=int, default=1000)
    args = parser.parse_args()
    inotify, polling, seconds = measure(args.files, 0.05, args.bulk)
    print(f"# pickup, {datetime.now():%Y-%m-%d}: {machine()}")
    print("settle_seconds 1.0, settle_checks 2; polling: poll_interval 0.5")
    print("| measure | p50 | p99 | mean | target |")
    print("|---|---|---|---|---|")
    for label, values, target in (("pickup, inotify", inotify, "p50 <= 1.3 s"),
                                  ("pickup, polling", polling, "")):
        print(f"| {label} ({len(values)} files) | {pct(values, 0.5):.3f} s | "
              f"{pct(values, 0.99):.3f} s | {statistics.mean(values):.3f} s | {target} |")
    print(f"| {args.bulk} files dropped at once, all queued | {seconds:.2f} s | | | <= 10 s |")
    emit([
        ("pickup p50, inotify (settle 1.0 s)", f"{pct(inotify, 0.5):.2f} s", "<= 1.3 s",
         pct(inotify, 0.5) <= 1.3),
        ("pickup p99, inotify", f"{pct(inotify, 0.99):.2f} s", "", None),
        ("pickup p50 / p99, polling (0.5 s polls, 2 looks)",
         f"{pct(polling, 0.5):.2f} / {pct(polling, 0.99):.2f} s", "", None),
        (f"{args.bulk} files dropped at once, all queued", f"{seconds:.1f} s", "<= 10 s",
         seconds <= 10),
    ])


if __name__ == "__main__":
    main()
