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

from ocr_daemon.testing import make_text_pdf


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


def pickup(polling: bool, files: int, gap: float) -> list[float]:
    watch = {"polling": polling, "poll_interval": 0.5, "settle_seconds": 1.0}
    with tempfile.TemporaryDirectory() as tmp, stack(
            watch=watch, logging={"level": "warning", "format": "json"}) as (env, _redis):
        data = make_text_pdf(Path(tmp) / "p.pdf", ["pickup"]).read_bytes()
        listener = env.listener()
        env.start("watch", notify=listener)  # no worker: claims stay, with their records
        listener.wait("READY=1")
        closed = {}
        for n in range(files):
            name = f"p{n:04d}.pdf"
            with open(env.inbox / name, "wb") as fh:
                fh.write(data)
            closed[name] = time.time()
            time.sleep(gap)
        wait_for(lambda: len(queued_at(env.processing)) == files, 120, what="all queued")
        times = queued_at(env.processing)
        return [times[name] - closed[name] for name in closed]


def bulk(files: int) -> float:
    with tempfile.TemporaryDirectory() as tmp, stack(
            watch={"settle_seconds": 1.0},
            logging={"level": "warning", "format": "json"}) as (env, _redis):
        data = make_text_pdf(Path(tmp) / "b.pdf", ["bulk"]).read_bytes()
        staging = env.root / "staging"
        staging.mkdir()
        for n in range(files):
            (staging / f"b{n:04d}.pdf").write_bytes(data)
        listener = env.listener()
        env.start("watch", notify=listener)
        listener.wait("READY=1")
        started = time.time()
        for p in sorted(staging.iterdir()):
            os.rename(p, env.inbox / p.name)
        wait_for(lambda: len(list(env.processing.iterdir())) == files
                 and len(queued_at(env.processing)) == files, 300, interval=0.2,
                 what="all queued")
        return max(queued_at(env.processing).values()) - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=100, help="files per pickup run")
    parser.add_argument("--bulk", type=int, default=1000)
    args = parser.parse_args()
    inotify = pickup(False, args.files, 0.05)
    polling = pickup(True, args.files, 0.05)
    seconds = bulk(args.bulk)
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
