"""Simulated hosts on this machine: each its own UTS namespace and hostname, process tree
(`ocr-daemon watch` and a worker), state dir and Celery node name; optionally a watcher
clock that runs ahead (libfaketime). Used by tests/test_hosts.py and bench/hosts.py."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from tests.conftest import PYTHON, Env, Proc, RedisServer
from tests.support.engines import use_sleeping


def host_command(env: Env, name: str, skew: str | None) -> list[str]:
    """One host: its own UTS namespace and hostname, a watcher and a worker inside. With
    ``skew`` the watcher's wall clock runs ahead (libfaketime; monotonic time stays true):
    its claims, dispatch notes and reaper judge time by that clock. (Under libfaketime a
    worker's sleeps hang, which no real host's skew does, so the worker keeps true time.)"""
    cfg = str(env.config_path)
    watch = f"{PYTHON} -m ocr_daemon watch --config {cfg}"
    if skew:
        watch = f"env FAKETIME_DONT_FAKE_MONOTONIC=1 faketime -f {skew} {watch}"
    inner = (f"hostname {name} && {watch} & "
             f"{PYTHON} -m ocr_daemon worker --config {cfg} --pool threads --concurrency 4 "
             f"--name worker@{name} & wait")
    return ["unshare", "--uts", "--fork", "--", "sh", "-c", inner]


class Host:
    def __init__(self, env: Env, name: str, skew: str | None = None) -> None:
        self.env, self.name, self.skew = env, name, skew
        self.proc: Proc | None = None
        self.lives = 0

    def start(self) -> None:
        self.lives += 1
        self.proc = Proc(host_command(self.env, self.name, self.skew), self.env.env(),
                         self.env.tmp / f"{self.name}-{self.lives}.log")
        self.env.procs.append(self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill_group()  # the whole host at once: watcher, worker, its threads

    def output(self) -> str:
        return "".join(p.read_text(errors="replace")
                       for p in sorted(self.env.tmp.glob(f"{self.name}-*.log")))




def make_hosts(tmp: Path, redis: RedisServer, prefix: str, count: int, skew: str | None,
               latency: float = 0.05, stall_timeout: float = 15) -> list[Host]:
    """``count`` hosts on one shared root (polling) and one Redis; the last one's watcher
    clock ``skew`` ahead. Each host's worker runs the test engine `sleeping` (``latency``)."""
    if skew and shutil.which("faketime") is None:
        raise AssertionError("faketime is missing: scripts/setup --test installs it")
    share = tmp / "share"
    made = []
    for n in range(1, count + 1):
        env = Env(tmp / f"host{n}", redis.url, prefix,
                  watch={"root": str(share), "polling": True, "poll_interval": 0.3,
                         "settle_checks": 2, "settle_seconds": 0.3},
                  stall_timeout=stall_timeout)
        use_sleeping(env, latency=latency)
        made.append(Host(env, f"host{n}", skew if n == count else None))
    return made


def drop(inbox: Path, source: Path, name: str) -> None:
    """A careful client's drop: a hidden temporary name, then a rename."""
    tmp = inbox / f".upload-{uuid.uuid4().hex}.part"
    shutil.copyfile(source, tmp)
    os.rename(tmp, inbox / name)
