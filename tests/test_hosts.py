"""Several hosts on one shared watch root and one Redis, simulated side by side: each host its
own process tree (`ocr-daemon watch` and a worker), state dir, hostname (a UTS namespace)
and Celery node name; one host's clock runs ahead. One host is SIGKILLed mid-run and brought
back: nothing is lost, nothing is done twice, nothing is stuck."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engines import use_sleeping
from tests.support.pdfs import make_text_pdf, page_text

from .conftest import PYTHON, Env, Proc, RedisServer, read_json, wait_for

HOSTS = 3
DOCUMENTS = 200
SKEW = "+3s"  # the third host's clock (libfaketime)


def _host_command(env: Env, name: str, skew: str | None) -> list[str]:
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
        self.proc = Proc(_host_command(self.env, self.name, self.skew), self.env.env(),
                         self.env.tmp / f"{self.name}-{self.lives}.log")
        self.env.procs.append(self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill_group()  # the whole host at once: watcher, worker, its threads

    def output(self) -> str:
        return "".join(p.read_text(errors="replace")
                       for p in sorted(self.env.tmp.glob(f"{self.name}-*.log")))


@pytest.fixture
def hosts(tmp_path: Path, redis_server: RedisServer, key_prefix: str) -> Iterator[list[Host]]:
    if shutil.which("faketime") is None:
        pytest.fail("faketime is missing: scripts/setup --test installs it")
    share = tmp_path / "share"
    made = []
    for n in range(1, HOSTS + 1):
        env = Env(tmp_path / f"host{n}", redis_server.url, key_prefix,
                  watch={"root": str(share), "polling": True, "poll_interval": 0.3,
                         "settle_checks": 2, "settle_seconds": 0.3},
                  stall_timeout=15)
        use_sleeping(env, latency=0.05)
        made.append(Host(env, f"host{n}", SKEW if n == HOSTS else None))
    yield made
    for host in made:
        host.env.close()


def _drop(inbox: Path, source: Path, name: str) -> None:
    tmp = inbox / f".upload-{uuid.uuid4().hex}.part"
    shutil.copyfile(source, tmp)
    os.rename(tmp, inbox / name)


@pytest.mark.slow
def test_three_hosts_one_killed_mid_run_every_document_ends_exactly_once(
        hosts: list[Host], tmp_path: Path) -> None:
    for host in hosts:
        host.start()
    share = hosts[0].env.cfg.watches[0].root  # the shared root (Env.root is its own)
    inbox, outbox = share / "inbox", share / "outbox"
    inbox.mkdir(parents=True, exist_ok=True)
    for host in hosts:  # every host's worker answers and its watcher polls
        wait_for(lambda h=host: '"event": "watching"' in h.output(), 60,
                 what=f"{host.name} watching")
    sources = {}
    for n in range(DOCUMENTS):
        pages = [page_text(n * 10 + p) for p in range(1, 3)]
        sources[f"d{n:03d}"] = pages
        _drop(inbox, make_text_pdf(tmp_path / f"d{n:03d}.pdf", pages), f"d{n:03d}.pdf")

    def ended() -> int:
        return sum(1 for s in sources if (outbox / f"{s}.json").exists())

    wait_for(lambda: ended() >= 60, 120, what="60 documents to end")
    victim = hosts[1]
    victim.kill()
    killed = time.monotonic()
    time.sleep(10)
    victim.start()
    wait_for(lambda: ended() == DOCUMENTS, 600, what="every document to end")
    took = time.monotonic() - killed
    wait_for(lambda: not any((share / "processing").iterdir()), 120,
             what="processing/ to empty")
    assert list((share / "failed").iterdir()) == []
    # A host killed mid-write leaves a hidden temporary file (housekeeping removes it later);
    # every visible file is one document's, once.
    names = sorted(p.name for p in outbox.iterdir() if not p.name.startswith("."))
    assert names == sorted(f"{s}{ext}" for s in sources
                           for ext in (".json", ".progress.json", ".txt"))  # no suffixes
    for stem, pages in sources.items():
        assert [p["text"] for p in read_json(outbox / f"{stem}.json")["pages"]] == pages
    archived = sorted(p.name for p in (share / "archive").iterdir())
    assert archived == sorted(f"{s}.pdf" for s in sources)
    queued_by = {host.name: host.output().count('"event": "document_queued"')
                 for host in hosts}
    print(f"all {DOCUMENTS} ended {took:.1f} s after {victim.name} was killed; "
          f"documents queued by each host: {queued_by}")
    # Polling watchers race for each file; the fastest wins it (the skewed host's watcher,
    # slowed by libfaketime's stat, often wins none). The victim had claims of its own.
    assert queued_by[victim.name] > 0 and sum(1 for n in queued_by.values() if n) >= 2, queued_by
    hostnames = {read_json(p)["source"].get("claimed_by", "").split(":")[0]
                 for p in outbox.glob("d*.json") if not p.name.endswith(".progress.json")}
    assert hostnames <= {h.name for h in hosts} or hostnames == {""}
