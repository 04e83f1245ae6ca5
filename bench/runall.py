"""`bench/run`: every benchmark, side by side figures measured in one run, one table."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime

from harness import ROOT, machine
from rows import PREFIX

BENCH = ROOT / "bench"
# (script, arguments in full mode, arguments with --quick)
PLAN: list[tuple[str, list[str], list[str]]] = [
    ("pickup.py", ["--files", "100", "--bulk", "1000"], ["--files", "10", "--bulk", "100"]),
    ("throughput.py", ["--docs", "1000"], ["--docs", "100"]),
    ("fanout.py", ["--pages", "200"], ["--pages", "100", "--per-page", "0.05"]),
    ("memory.py", ["--pages", "2000", "--docs", "40"], ["--pages", "200", "--docs", "5"]),
    ("overhead.py", ["--docs", "500"], ["--docs", "60"]),
    ("tesseract_vs_ocrmypdf.py", ["--rounds", "1"], ["--rounds", "1", "--quick"]),
    ("api.py", [], ["--latency", "50", "--concurrent", "20", "--sse", "200", "--hold", "2"]),
    ("searchable_pdf.py", ["--rounds", "2"], ["--rounds", "1", "--quick", "--pages", "200"]),
    ("fidelity.py", [], ["--quick"]),  # needs ../shared/corpus beside the repository
    ("gemini_cost.py", ["--pages", "500"], ["--pages", "100"]),
    ("capacity.py", [], ["--text-pages", "200", "--scan-pages", "2"]),
    ("hosts.py", [], ["--documents", "120"]),
    # Quick: still two OCR chunks in each OCR row (fewer than chunk_threshold_pages OCR
    # pages are read in one pass, on one worker, which a 2-process baseline would beat).
    ("largepdf.py", [], ["--text-pages", "400", "--every", "20", "--scan-pages", "20"]),
]


def run(script: str, args: list[str]) -> tuple[list[list[object]], str]:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                          text=True, cwd=ROOT, check=False)
    rows = [json.loads(line[len(PREFIX):]) for line in done.stdout.splitlines()
            if line.startswith(PREFIX)]
    if done.returncode or not rows:
        return [[f"{script} failed (exit {done.returncode})", done.stderr.strip()[-200:],
                 "", False]], done.stdout
    return rows[-1], done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, about a minute")
    parser.add_argument("--verbose", action="store_true", help="also print each benchmark")
    args = parser.parse_args()
    started = time.monotonic()
    table: list[list[object]] = []
    for script, full, quick in PLAN:
        print(f"running {script} ...", file=sys.stderr, end=" ", flush=True)
        began = time.monotonic()
        rows, output = run(script, quick if args.quick else full)
        print(f"{time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
        table += rows
        if args.verbose:
            print(output, file=sys.stderr)
    mode = "bench/run --quick" if args.quick else "bench/run"
    print(f"# {mode}, {datetime.now():%Y-%m-%d %H:%M}, {time.monotonic() - started:.0f} s")
    print(f"machine: {machine()}")
    print()
    print("| measure | measured | target | met |")
    print("|---|---|---|---|")
    for measure, value, target, met in table:
        mark = "" if met is None else ("yes" if met else "**no**")
        print(f"| {measure} | {value} | {target} | {mark} |")


if __name__ == "__main__":
    main()
