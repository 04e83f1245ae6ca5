"""Where a small document's time goes: file-system system calls (strace across every process
of `ocr-daemon run`) and Redis commands (the server's commandstats) per document, for the
same one-page text PDFs as the throughput benchmark, beside the sequential loop's own calls.
Needs strace (Debian: `apt-get install strace`); not part of `bench/run`."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from harness import drop_all, machine, process_group, small_documents, wait_results
from throughput import make_inputs, sequential

CALLS = ("fsync", "openat", "rename", "mkdir", "unlinkat", "write", "read", "sendto",
         "recvfrom")


def parse(report: Path) -> dict[str, tuple[int, int, float]]:
    """strace -c's table: syscall -> (calls, errors, seconds in the kernel)."""
    found: dict[str, tuple[int, int, float]] = {}
    for line in report.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] in CALLS:
            errors = int(parts[4]) if len(parts) == 6 else 0
            found[parts[-1]] = (int(parts[3]), errors, float(parts[1]))
    return found


def strace(pids: list[str], report: Path) -> subprocess.Popen[bytes]:
    args = ["strace", "-f", "-c", "-e", "trace=" + ",".join(CALLS), "-o", str(report)]
    for pid in pids:
        args += ["-p", pid]
    return subprocess.Popen(args, stderr=subprocess.DEVNULL)


def daemon(inputs: list[Path], report: Path) -> dict[str, float]:
    docs = len(inputs)
    with small_documents(inputs) as (env, redis, staging):
        proc = env.run_daemon()
        time.sleep(2.0)  # workers forked and idle: every process exists before strace attaches
        pids = process_group(proc.pid)
        redis_pid = str(redis.client().info("server")["process_id"])
        client = redis.client()
        client.config_resetstat()
        tracer = strace([p for p in pids if p != redis_pid], report)
        time.sleep(1.0)
        drop_all(env, staging)
        wait_results(env, docs)
        time.sleep(0.5)
        tracer.terminate()
        tracer.wait(30)
        stats = client.info("commandstats")
        commands = {k.removeprefix("cmdstat_"): v["calls"] / docs for k, v in stats.items()
                    if k != "cmdstat_config|resetstat"}
    return commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=100)
    args = parser.parse_args()
    if shutil.which("strace") is None:
        sys.exit("strace is not installed: apt-get install strace")
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp) / "in", args.docs)
        loop_report = Path(tmp) / "loop.txt"
        tracer = strace([str(os.getpid())], loop_report)
        time.sleep(1.0)
        sequential(inputs, Path(tmp) / "loop")
        tracer.terminate()
        tracer.wait(30)
        daemon_report = Path(tmp) / "daemon.txt"
        commands = daemon(inputs, daemon_report)
        loop, through = parse(loop_report), parse(daemon_report)
    print(f"# system calls and Redis commands per document, {datetime.now():%Y-%m-%d}: "
          f"{machine()}")
    print(f"{args.docs} one-page text PDFs; strace -f -c over every process but Redis's")
    print("| system call | sequential loop | daemon (errors) |")
    print("|---|---|---|")
    for name in CALLS:
        lc, _, _ = loop.get(name, (0, 0, 0.0))
        dc, de, _ = through.get(name, (0, 0, 0.0))
        print(f"| {name} | {lc / args.docs:.1f} | {dc / args.docs:.1f} ({de / args.docs:.1f}) |")
    loop_ms, daemon_ms = (1000 * sum(v[2] for v in calls.values()) / args.docs
                          for calls in (loop, through))
    print(f"| kernel time in these calls, ms (strace's own cost included) | {loop_ms:.2f} | "
          f"{daemon_ms:.2f} |")
    total = sum(commands.values())
    scripted = commands.get("evalsha", 0) + commands.get("eval", 0)
    print(f"Redis commands per document: {total:.0f}, of which {scripted:.0f} EVALSHA "
          f"(their inner commands counted too); the most frequent:")
    for name, per_doc in sorted(commands.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {name}: {per_doc:.1f}")


if __name__ == "__main__":
    main()
