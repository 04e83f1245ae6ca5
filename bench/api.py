"""The HTTP API: upload-to-queued latency (p50/p99), 100 concurrent 1 MB uploads (seconds, the
API's RSS), and SSE clients held at once while a worker drains the same documents (seconds to
process them with and without those clients)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from harness import Env, machine, stack, wait_for
from pypdf import PdfReader, PdfWriter
from rows import emit

from ocr_daemon.service.procs import free_port
from tests.support.pdfs import make_text_pdf


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, KiB: now and its peak."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def cpu_seconds(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def padded_pdf(path: Path, size: int) -> Path:
    make_text_pdf(path, ["a one megabyte upload"])
    writer = PdfWriter(clone_from=PdfReader(path))
    writer.add_attachment("padding.bin", os.urandom(max(0, size - path.stat().st_size)))
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def upload(client: httpx.AsyncClient, data: bytes, name: str) -> tuple[str, float]:
    began = time.perf_counter()
    res = await client.post("/v1/documents", files={"file": (name, data)})
    res.raise_for_status()
    return str(res.json()["id"]), time.perf_counter() - began


async def sequential(client: httpx.AsyncClient, data: bytes, n: int, tag: str) -> list[str]:
    return [(await upload(client, data, f"{tag}-{i:04d}.pdf"))[0] for i in range(n)]


def ended(env: Env) -> int:
    results = [p for p in env.outbox.glob("*.json") if not p.name.endswith(".progress.json")]
    return len(results) + len(list(env.failed.glob("*.error.json")))


def drain(env: Env, expected: int, timeout: float = 900) -> float:
    """Start a worker, wait for READY=1, then the seconds until ``expected`` documents have
    ended; the worker is stopped again."""
    listener = env.listener()
    worker = env.start("worker", notify=listener)
    listener.wait("READY=1", timeout=120)
    began = time.monotonic()
    wait_for(lambda: ended(env) >= expected, timeout, 0.1, what=f"{expected} documents ended")
    seconds = time.monotonic() - began
    worker.stop()
    return seconds


async def follow(client: httpx.AsyncClient, doc_id: str, opened: asyncio.Event,
                 counter: list[int]) -> dict[str, Any]:
    last: dict[str, Any] = {}
    async with client.stream("GET", f"/v1/documents/{doc_id}/events") as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data:"):
                last = json.loads(line[5:])
                if not opened.is_set():
                    counter[0] += 1
                    opened.set()
    return last


async def measure(env: Env, base: str, api_pid: int, args: argparse.Namespace,
                  tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    small = make_text_pdf(tmp / "small.pdf", ["upload latency"]).read_bytes()
    big = padded_pdf(tmp / "big.pdf", 1024 * 1024).read_bytes()
    limits = httpx.Limits(max_connections=args.sse + 50, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as client:
        await sequential(client, small, 10, "warm")  # imports, first connections
        latencies = [(await upload(client, small, f"lat-{i:04d}.pdf"))[1]
                     for i in range(args.latency)]
        out["latency"] = latencies
        rss_before = rss_kib(api_pid)
        began = time.perf_counter()
        await asyncio.gather(*(upload(client, big, f"big-{i:03d}.pdf")
                               for i in range(args.concurrent)))
        out["concurrent_s"] = time.perf_counter() - began
        out["rss_before"], _ = rss_before
        out["rss_after"], out["rss_peak"] = rss_kib(api_pid)
        total = 10 + args.latency + args.concurrent
        drain(env, total)  # the documents so far, out of the way

        baseline = await sequential(client, small, args.sse, "base")
        cpu0 = cpu_seconds(api_pid)
        out["baseline_s"] = drain(env, total + len(baseline))
        out["baseline_api_cpu"] = cpu_seconds(api_pid) - cpu0
        total += len(baseline)

        followed = await sequential(client, small, args.sse, "sse")
        counters = [0]
        events = [asyncio.Event() for _ in followed]
        tasks = [asyncio.create_task(follow(client, d, e, counters))
                 for d, e in zip(followed, events, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 120)
        out["sse_open"] = counters[0]
        cpu0, held_from = cpu_seconds(api_pid), time.monotonic()
        await asyncio.sleep(args.hold)
        out["sse_hold_cpu"] = (cpu_seconds(api_pid) - cpu0) / (time.monotonic() - held_from)
        out["sse_rss"], _ = rss_kib(api_pid)
        cpu0 = cpu_seconds(api_pid)
        out["sse_s"] = await asyncio.to_thread(drain, env, total + len(followed))
        out["sse_api_cpu"] = cpu_seconds(api_pid) - cpu0
        finals = await asyncio.wait_for(asyncio.gather(*tasks), 120)
        out["sse_ended"] = sum(1 for f in finals if f.get("ended"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=int, default=200, help="sequential small uploads")
    parser.add_argument("--concurrent", type=int, default=100, help="1 MB uploads at once")
    parser.add_argument("--sse", type=int, default=200, help="SSE clients held at once")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds they are held idle")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp, stack(
            watch={"engine": "pdftext", "settle_seconds": 0.3},
            workers={"concurrency": 2},
            logging={"level": "warning", "format": "json"},
            api={"enabled": True, "listen": f"127.0.0.1:{port}"}) as (env, _redis):
        api = env.start("api")
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(base), 60, 0.2, what="the API")
        out = asyncio.run(measure(env, base, api.pid, args, Path(tmp)))
    lat = out["latency"]
    print(f"# api, {datetime.now():%Y-%m-%d}: {machine()}")
    print("`ocr-daemon api` alone for the uploads (no worker: documents stay queued); one "
          "worker (-c 2, prefork) started to drain them")
    print("| measure | value |")
    print("|---|---|")
    print(f"| upload to 202 queued, {len(lat)} sequential 1 KB PDFs | p50 "
          f"{pct(lat, .5) * 1000:.1f} ms, p99 {pct(lat, .99) * 1000:.1f} ms, mean "
          f"{statistics.mean(lat) * 1000:.1f} ms |")
    print(f"| {args.concurrent} concurrent 1 MB uploads, all 202 | {out['concurrent_s']:.2f} s |")
    print(f"| API RSS before / after / peak | {out['rss_before'] / 1024:.0f} / "
          f"{out['rss_after'] / 1024:.0f} / {out['rss_peak'] / 1024:.0f} MiB |")
    print(f"| SSE clients held at once (first event received) | {out['sse_open']} |")
    print(f"| API CPU while they are held idle | {out['sse_hold_cpu'] * 100:.1f} % of a core, "
          f"RSS {out['sse_rss'] / 1024:.0f} MiB |")
    print(f"| {args.sse} documents drained by the worker: without / with {args.sse} SSE "
          f"clients | {out['baseline_s']:.2f} s / {out['sse_s']:.2f} s |")
    print(f"| API CPU during those drains: without / with the SSE clients | "
          f"{out['baseline_api_cpu']:.2f} s / {out['sse_api_cpu']:.2f} s |")
    print(f"| SSE streams that delivered the end | {out['sse_ended']} of {args.sse} |")
    emit([
        ("API upload to queued, p50 / p99", f"{pct(lat, .5) * 1000:.0f} / "
         f"{pct(lat, .99) * 1000:.0f} ms", "", None),
        (f"API: {args.concurrent} concurrent 1 MB uploads", f"{out['concurrent_s']:.1f} s, "
         f"peak RSS {out['rss_peak'] / 1024:.0f} MiB", "", None),
        ("API: SSE clients held at once", f"{out['sse_open']} (all ended: "
         f"{out['sse_ended']})", ">= 200", out["sse_open"] >= 200 and out["sse_ended"] >= 200),
        (f"API: {args.sse} documents drained, without / with the SSE clients",
         f"{out['baseline_s']:.1f} / {out['sse_s']:.1f} s (API CPU {out['baseline_api_cpu']:.1f}"
         f" / {out['sse_api_cpu']:.1f} s)", "", None),
    ])


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
