"""Orchestration overhead per document: CPU milliseconds spent in Celery, kombu, billiard and
the Redis client (sampled with py-spy across the daemon's processes) plus the Redis server's
own CPU time, divided by the documents processed. One-page text PDFs through `ocr-daemon run`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from harness import machine, stack, wait_for
from rows import emit
from throughput import make_inputs

ORCHESTRATION = ("celery", "kombu", "billiard", "redis", "vine", "amqp")
RATE = 250  # samples per second and thread


def py_spy() -> str:
    found = Path(sys.executable).with_name("py-spy")
    if not found.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    return str(found)


def classify(raw: Path) -> Counter[str]:
    """On-CPU samples by the deepest third-party package on the stack (ours: 'ocr_daemon')."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        owner = "other"
        for frame in reversed(stack.split(";")):
            match = re.search(r"\(([A-Za-z0-9_]+)/", frame)
            if match:
                owner = match.group(1)
                break
            if re.search(r"\((?!<)[a-z_]+\.py:\d+\)", frame):
                owner = "ocr_daemon"  # our modules show without a package folder
                break
        counts[owner] += int(n)
    return counts


def measure(docs: int) -> tuple[float, float, float, Counter[str]]:
    with tempfile.TemporaryDirectory() as tmp, stack(
            watch={"engine": "pdftext", "settle_seconds": 0.3},
            workers={"concurrency": os.cpu_count() or 2},
            logging={"level": "warning", "format": "json"}) as (env, redis):
        inputs = make_inputs(Path(tmp) / "in", docs)
        staging = env.root / "staging"
        staging.mkdir()
        for source in inputs:
            os.link(source, staging / source.name)
        proc = env.run_daemon()
        client = redis.client()
        cpu_before = client.info("cpu")
        raw = Path(tmp) / "spy.txt"
        spy = subprocess.Popen([py_spy(), "record", "--pid", str(proc.pid), "--subprocesses",
                                "--rate", str(RATE), "--format", "raw", "--output", str(raw),
                                "--nonblocking"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        started = time.perf_counter()
        for p in sorted(staging.iterdir()):
            os.rename(p, env.inbox / p.name)
        wait_for(lambda: sum(1 for p in env.outbox.glob("t*.json")
                             if not p.name.endswith(".progress.json")) == docs,
                 900, interval=0.2, what="all results")
        wall = time.perf_counter() - started
        spy.send_signal(2)
        spy.wait(60)
        cpu_after = client.info("cpu")
        server = sum(cpu_after[k] - cpu_before[k] for k in ("used_cpu_sys", "used_cpu_user"))
        counts = classify(raw)
        client_ms = 1000 * sum(counts[p] for p in ORCHESTRATION) / RATE / docs
        return client_ms, 1000 * server / docs, wall, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=500)
    args = parser.parse_args()
    client_ms, server_ms, wall, counts = measure(args.docs)
    total = sum(counts.values())
    print(f"# orchestration overhead, {datetime.now():%Y-%m-%d}: {machine()}")
    print(f"{args.docs} one-page text PDFs in {wall:.1f} s; py-spy at {RATE} Hz, on-CPU samples")
    print("| measure | ms per document | target |")
    print("|---|---|---|")
    print(f"| Celery, kombu, billiard, Redis client (CPU) | {client_ms:.1f} | |")
    print(f"| Redis server (CPU) | {server_ms:.1f} | |")
    print(f"| orchestration total | {client_ms + server_ms:.1f} | <= 10 |")
    shares = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in counts.most_common(8))
    print(f"CPU by package: {shares}")
    total_ms = client_ms + server_ms
    emit([("orchestration per document (Celery, kombu, Redis client and server)",
           f"{total_ms:.1f} ms", "<= 10 ms", total_ms <= 10)])


if __name__ == "__main__":
    main()
