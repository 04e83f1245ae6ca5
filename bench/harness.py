"""Shared set-up for the benchmarks: the tests' real Redis, config and process helpers."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocr_daemon.config import WatchConfig  # noqa: E402
from tests.conftest import Env, RedisServer, read_json, wait_for  # noqa: E402

__all__ = ["Env", "RedisServer", "drop_all", "machine", "process_group", "read_json",
           "small_documents", "stack", "wait_for", "wait_results"]


def machine() -> str:
    """One line describing this machine, printed with every table."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                             check=False).stdout.split()[2:3]
    return (f"{os.cpu_count()} CPUs ({model}){mem}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}; redis-server {' '.join(redis_v)}")


@contextmanager
def stack(prefix: str = "bench:", **overrides: Any) -> Iterator[tuple[Env, RedisServer]]:
    """A fresh Redis and config in a temporary folder; every process stopped on exit."""
    # The daemon's own text_chunk_pages unless a benchmark says otherwise (the tests' Env
    # plans text pages like OCR pages, to exercise the fan-out with quick text PDFs).
    watch = overrides.get("watch") or {}
    overrides["watch"] = {"text_chunk_pages": WatchConfig.model_fields["text_chunk_pages"].default,
                          **watch}
    with tempfile.TemporaryDirectory(prefix="ocrd-bench-") as tmp:
        redis = RedisServer(Path(tmp) / "redis")
        env = Env(Path(tmp) / "env", redis.url, prefix, **overrides)
        try:
            yield env, redis
        finally:
            env.close()
            redis.stop()


def timed_result(env: Env, stem: str, timeout: float = 600) -> tuple[dict[str, Any], float]:
    """Wait for <stem>.json; also return seconds from now until it appeared."""
    start = time.monotonic()
    result = env.wait_result(stem, timeout=timeout)
    return result, time.monotonic() - start


@contextmanager
def small_documents(inputs: list[Path], settle: float = 0.3
                    ) -> Iterator[tuple[Env, RedisServer, Path]]:
    """A stack for one-page text PDFs (engine pdftext, a worker process per CPU), with the
    inputs hard-linked into a staging folder beside the inbox: `drop_all` is then one
    rename per file, the way a careful client drops them."""
    with stack(watch={"engine": "pdftext", "settle_seconds": settle},
               workers={"concurrency": os.cpu_count() or 2},
               logging={"level": "warning", "format": "json"}) as (env, redis):
        staging = env.root / "staging"
        staging.mkdir(parents=True)
        for source in inputs:
            os.link(source, staging / source.name)
        yield env, redis, staging


def drop_all(env: Env, staging: Path) -> None:
    for path in sorted(staging.iterdir()):
        os.rename(path, env.inbox / path.name)


def wait_results(env: Env, count: int, timeout: float = 900) -> None:
    """Until ``count`` result files (`<stem>.json`, the last file of each) are in outbox."""
    wait_for(lambda: sum(1 for p in env.outbox.glob("*.json")
                         if not p.name.endswith(".progress.json")) == count,
             timeout, interval=0.2, what="all results")


def process_group(pid: int) -> list[str]:
    """The pids of ``pid``'s process group (`ocr-daemon run` and its workers)."""
    return subprocess.run(["pgrep", "-g", str(os.getpgid(pid))], capture_output=True,
                          text=True, check=False).stdout.split()
