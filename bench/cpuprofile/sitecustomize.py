"""CPU accounting for bench/overhead.py, loaded into every daemon process through PYTHONPATH
(there only, with OCRD_BENCH_CPU=DIR set).

Each process counts, with per-thread CPU clocks: CPU inside Redis client calls and Celery's
send_task (orchestration, wherever they happen), and CPU inside our task bodies outside those
calls (our own work). A thread polls DIR: the file `reset` starts the counts over, `dump`
writes them with the process's whole CPU time (getrusage) to DIR/<pid>.json. Prefork
children start their own counts after fork.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FOLDER = os.environ.get("OCRD_BENCH_CPU")
_lock = threading.Lock()
_local = threading.local()
_counts: dict[str, float] = {"orchestration": 0.0, "ours": 0.0}
_role = "watcher" if "run" in sys.argv else ("worker" if "worker" in sys.argv else "other")
_base = 0.0


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _add(key: str, seconds: float) -> None:
    with _lock:
        _counts[key] += seconds


def _timed(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Count the CPU of the outermost of nested orchestration calls on this thread."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(_local, "inside", False):
            return fn(*args, **kwargs)
        _local.inside = True
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _local.inside = False
            spent = time.thread_time() - started
            _add("orchestration", spent)
            _local.orch = getattr(_local, "orch", 0.0) + spent

    return wrapper


def _patch() -> None:
    import celery.app.base
    import redis.client
    from celery import signals

    redis.client.Redis.execute_command = _timed(redis.client.Redis.execute_command)
    redis.client.Pipeline.execute = _timed(redis.client.Pipeline.execute)
    redis.client.PubSub.execute_command = _timed(redis.client.PubSub.execute_command)
    redis.client.PubSub.get_message = _timed(redis.client.PubSub.get_message)
    celery.app.base.Celery.send_task = _timed(celery.app.base.Celery.send_task)

    def prerun(**_: Any) -> None:
        _local.task = (time.thread_time(), getattr(_local, "orch", 0.0))

    def postrun(**_: Any) -> None:
        began, orch = getattr(_local, "task", (None, 0.0))
        if began is not None:
            spent = time.thread_time() - began
            _add("ours", spent - (getattr(_local, "orch", 0.0) - orch))

    signals.task_prerun.connect(prerun, weak=False)
    signals.task_postrun.connect(postrun, weak=False)


def _dump(folder: Path) -> None:
    with _lock:
        data = {**_counts, "cpu": _process_cpu() - _base, "role": _role}
    tmp = folder / f".{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, folder / f"{os.getpid()}.json")


def _reset() -> None:
    global _base
    with _lock:
        _counts.update(orchestration=0.0, ours=0.0)
        _base = _process_cpu()


def _poll(folder: Path) -> None:
    seen = {"reset": 0.0, "dump": 0.0}
    actions = {"reset": _reset, "dump": lambda: _dump(folder)}
    while True:
        time.sleep(0.1)
        for name, action in actions.items():
            try:
                stamp = (folder / name).stat().st_mtime
            except FileNotFoundError:
                continue
            if stamp > seen[name]:
                seen[name] = stamp
                action()


def _start_poller() -> None:
    threading.Thread(target=_poll, args=(Path(FOLDER),), daemon=True).start()  # type: ignore[arg-type]


def _in_child() -> None:
    global _role, _lock
    _role = "worker child"
    _lock = threading.Lock()
    _reset()
    _start_poller()


if FOLDER:
    _patch()
    _reset()
    _start_poller()
    os.register_at_fork(after_in_child=_in_child)
