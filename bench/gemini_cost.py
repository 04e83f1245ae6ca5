"""Gemini cost and wall time: a backlog in interactive mode vs batch mode, through the daemon.

Tokens are what the fake Gemini server (tests/fake_gemini.py) reports in usageMetadata:
258 prompt tokens per PDF page (Gemini's documented figure) plus 100 for the prompt, output
4 characters a token, thinking 0 at the default level (minimal). Priced at Google's list
prices for the default model, gemini-3.1-flash-lite (USD per million tokens, thinking
billed as output; the Batch API bills half): see PRICES. The fake's batch jobs finish on
their second poll: the batch wall time measures the daemon's own overhead (collecting,
submitting, polling, mapping back), not Google's turnaround, which is up to 24 h.

    bench/gemini_cost.py [--pages 500] [--rpm 60]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from harness import machine, read_json, stack, wait_results
from rows import emit

from tests.fake_gemini import running
from tests.support.pdfs import make_text_pdf, page_text

MODEL = "gemini-3.1-flash-lite"
# https://ai.google.dev/gemini-api/docs/pricing, gemini-3.1-flash-lite, paid tier (USD / 1M)
PRICES = {"input": 0.25, "output": 1.50}
BATCH_FACTOR = 0.5  # the Batch API: 50 % of the interactive price
DOC_PAGES = 100


def run(mode: str, pages: int, rpm: int, folder: Path) -> dict[str, Any]:
    docs = [make_text_pdf(folder / f"{mode}-{n}.pdf",
                          [page_text(n * DOC_PAGES + p) for p in range(1, DOC_PAGES + 1)])
            for n in range(pages // DOC_PAGES)]
    with running() as fake, stack(
            watch={"engine": "gemini", "chunk_pages": 10, "chunk_threshold_pages": 10,
                   "chunks_in_flight": 50},
            engines={"gemini": {"base_url": fake.url, "model": MODEL, "timeout": 30,
                                "requests_per_minute": rpm, "mode": mode,
                                "batch_collect_seconds": 5, "batch_poll_interval": 2,
                                "batch_poll_max": 5}},
            workers={"concurrency": 2, "retry_backoff_max": 5},
            logging={"level": "warning", "format": "json"}) as (env, _redis):
        env.run_daemon(extra_env={"GEMINI_API_KEY": "bench-key"})
        started = time.monotonic()
        for doc in docs:
            env.drop(doc)
        wait_results(env, len(docs), timeout=1800)
        seconds = time.monotonic() - started
        usage = [read_json(env.outbox / f"{d.stem}.json")["usage"] for d in docs]
        jobs = len(fake.batch.jobs)
        interactive_requests = len(fake.generate_calls())
        if os.environ.get("GEMINI_COST_LOG"):
            Path(os.environ["GEMINI_COST_LOG"]).write_text(
                "".join(p.output() for p in env.procs))
    total = {k: sum(int(u[k]) for u in usage) for k in
             ("requests", "prompt_tokens", "output_tokens", "thinking_tokens")}
    billed_out = total["output_tokens"] + total["thinking_tokens"]
    factor = BATCH_FACTOR if mode == "batch" else 1.0
    cost = (total["prompt_tokens"] * PRICES["input"] + billed_out * PRICES["output"]) / 1e6
    return {**total, "seconds": seconds, "jobs": jobs, "interactive": interactive_requests,
            "cost_per_1000": cost * factor * 1000 / len(docs) / DOC_PAGES,
            "billed_tokens": (total["prompt_tokens"] + billed_out) * factor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=500, help="backlog size (x100)")
    parser.add_argument("--rpm", type=int, default=60, help="requests_per_minute (config)")
    parser.add_argument("--modes", default="interactive,batch", help="modes to run")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ocrd-gemini-cost-") as tmp:
        found = {mode: run(mode, args.pages, args.rpm, Path(tmp))
                 for mode in args.modes.split(",")}
    for mode, f in found.items():
        print(f"{mode}: {args.pages} pages, {f['requests']} requests ({f['interactive']} "
              f"interactive, {f['jobs']} batch jobs), prompt {f['prompt_tokens']}, output "
              f"{f['output_tokens']}, thinking {f['thinking_tokens']} tokens; billed-equivalent "
              f"{f['billed_tokens']:.0f}; ${f['cost_per_1000']:.4f} per 1,000 pages; wall "
              f"{f['seconds']:.1f} s at {args.rpm} requests/min")
    if set(found) != {"interactive", "batch"}:
        return
    i, b = found["interactive"], found["batch"]
    emit([
        (f"gemini cost per 1,000 pages, interactive ({MODEL} list price)",
         f"${i['cost_per_1000']:.4f}", "", None),
        ("gemini cost per 1,000 pages, batch", f"${b['cost_per_1000']:.4f}",
         "half of interactive", abs(b["cost_per_1000"] - i["cost_per_1000"] / 2)
         <= 0.01 * i["cost_per_1000"]),
        (f"gemini {args.pages}-page backlog wall time, interactive at {args.rpm} rpm",
         f"{i['seconds']:.1f} s", "", None),
        (f"gemini {args.pages}-page backlog wall time, batch (fake server: no Google queue)",
         f"{b['seconds']:.1f} s", "", None),
    ])


if __name__ == "__main__":
    main()
