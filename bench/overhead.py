"""Orchestration overhead per document: CPU time spent in Celery, kombu, billiard and the
Redis client across the daemon's processes, plus the Redis server's own CPU, divided by the
documents processed. One-page text PDFs through `ocr-daemon run`.

CPU time from per-thread CPU clocks, not time on a stack (a sampler counts a thread waiting
for a CPU or a reply as busy): bench/cpuprofile, loaded into every daemon process through
PYTHONPATH, times every Redis client call and Celery send with the thread's CPU clock, and
our task bodies outside those calls. Then, per process:

- worker main process (Celery's consumer: receives, hands to children, acknowledges): all of
  its CPU is orchestration;
- worker child: its CPU outside our task bodies (Celery's tracer, the pipe to the parent),
  plus the Redis calls inside them;
- watcher (`ocr-daemon run`): its Redis calls and Celery sends;
- the Redis server: all of its CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import ROOT, drop_all, machine, process_group, small_documents, wait_for, wait_results
from rows import emit
from throughput import make_inputs

HOOK = ROOT / "bench" / "cpuprofile"


def orchestration_of(dump: dict[str, float | str]) -> float:
    cpu, orch, ours = (float(dump[k]) for k in ("cpu", "orchestration", "ours"))
    role = dump["role"]
    if role == "worker":
        return cpu
    if role == "worker child":
        return cpu - ours
    return orch


def round_trip_cpu(client: Any, count: int = 2000) -> float:
    """Client CPU seconds of one Redis round trip (a GET), measured here and now."""
    client.set("bench:probe", "x")
    started = time.process_time()
    for _ in range(count):
        client.get("bench:probe")
    return (time.process_time() - started) / count


def measure(inputs: list[Path], folder: Path
            ) -> tuple[Counter[str], Counter[str], float, float, float]:
    """CPU seconds by role (orchestration, total), Redis server CPU, wall seconds, and the
    client CPU of one Redis round trip."""
    extra = {"OCRD_BENCH_CPU": str(folder),
             "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOK),
                                                          os.environ.get("PYTHONPATH")]))}
    with small_documents(inputs) as (env, redis, staging):
        proc = env.run_daemon(extra_env=extra)
        time.sleep(0.5)  # READY came: every process started; now idle
        pids = process_group(proc.pid)
        client = redis.client()
        (folder / "reset").touch()
        time.sleep(0.5)
        before = client.info("cpu")
        started = time.perf_counter()
        drop_all(env, staging)
        wait_results(env, len(inputs))
        wall = time.perf_counter() - started
        after = client.info("cpu")
        trip = round_trip_cpu(client)
        (folder / "dump").touch()
        wait_for(lambda: len(list(folder.glob("*.json"))) >= len(pids), 30,
                 what="every process's counts")
    server = sum(after[k] - before[k] for k in ("used_cpu_sys", "used_cpu_user"))
    orch: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for path in folder.glob("*.json"):
        dump = json.loads(path.read_text())
        orch[dump["role"]] += orchestration_of(dump)
        total[dump["role"]] += float(dump["cpu"])
    return orch, total, server, wall, trip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp) / "in", args.docs)
        folder = Path(tmp) / "cpu"
        folder.mkdir()
        orch, total, server, wall, trip = measure(inputs, folder)
    ms = 1000 / args.docs
    orchestration = sum(orch.values()) * ms + server * ms
    print(f"# orchestration overhead, {datetime.now():%Y-%m-%d}: {machine()}")
    print(f"{args.docs} one-page text PDFs through `ocr-daemon run` in {wall:.1f} s; "
          "CPU from per-thread clocks")
    print("| process | CPU ms per document | of which orchestration |")
    print("|---|---|---|")
    for role in ("watcher", "worker", "worker child"):
        print(f"| {role} | {total[role] * ms:.1f} | {orch[role] * ms:.1f} |")
    print(f"| Redis server | {server * ms:.1f} | {server * ms:.1f} |")
    print(f"| all | {sum(total.values()) * ms + server * ms:.1f} | {orchestration:.1f} "
          "(target <= 10) |")
    print(f"One Redis round trip (GET) costs {trip * 1e6:.0f} us of client CPU here.")
    emit([("orchestration per document (CPU in Celery, kombu, billiard, Redis client and "
           "server)", f"{orchestration:.1f} ms", "<= 10 ms", orchestration <= 10)])


if __name__ == "__main__":
    main()
