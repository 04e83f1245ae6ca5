"""Fixtures: a real redis-server on a free port, configs in temp folders, real daemon processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from ocr_daemon import config as config_mod
from ocr_daemon.service.procs import free_port

RESOURCES = Path(__file__).parent / "resources"
PYTHON = sys.executable
ROOT = Path(__file__).resolve().parents[1]
# Every process a test starts (daemons, workers, CLI runs) can import the test engine plugin
# (engines.plugins: [tests.support.engines]) from the repository, whatever its working dir.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05,
             what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (read from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class RedisServer:
    """A throwaway redis-server on a free loopback port (never the machine's 6379)."""

    def __init__(self, folder: Path, persistent: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is required: run the tests through scripts/test")
        self.folder = folder
        self.binary = binary
        self.port = free_port()
        self.persistent = persistent  # append-only file, fsync every second, as in production
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.folder), "--save", "", "--appendonly",
             "yes" if self.persistent else "no", "--appendfsync", "everysec",
             "--maxmemory-policy", "noeviction", "--daemonize", "no",
             "--logfile", str(self.folder / "redis.log")],
            stdin=subprocess.DEVNULL,
        )
        wait_for(self._ping, 10, what="redis-server to answer")

    def _ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        """Kill (SIGKILL) and start again: empty, or from its append-only file if persistent."""
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


class NotifyListener:
    """Plays systemd's side of $NOTIFY_SOCKET: collects READY=1, WATCHDOG=1, STOPPING=1."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, BlockingIOError):
                return self.messages
            self.messages.extend(data.decode().splitlines())

    def wait(self, state: str, timeout: float = 30.0) -> None:
        wait_for(lambda: state in self.drain(), timeout, what=f"{state} on NOTIFY_SOCKET")

    def close(self) -> None:
        self.sock.close()


class Proc:
    """A daemon process in its own process group, stopped at the end of the test."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self.log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout: float = 60.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_group()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # nothing of ours may outlive the test
        self.log.close()
        return int(self.popen.returncode)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")


class Env:
    """One test's configuration: a watch root, a state dir, a config file, real processes."""

    def __init__(self, tmp: Path, redis_url: str, prefix: str, **overrides: Any) -> None:
        self.tmp = tmp
        self.redis_url = redis_url
        self.prefix = prefix
        self.procs: list[Proc] = []
        self.listeners: list[NotifyListener] = []
        self.write_config(**overrides)

    def write_config(self, watch: dict[str, Any] | None = None, **top: Any) -> None:
        # Test PDFs are text PDFs (quick to make) standing in for pages that cost real work:
        # unless a test says otherwise, their text pages are planned like OCR pages, in
        # chunks of chunk_pages, so that the fan-out is what they exercise.
        watch = {"text_chunk_pages": (watch or {}).get("chunk_pages", 10), **(watch or {})}
        data: dict[str, Any] = {
            "redis": {"url": self.redis_url, "key_prefix": self.prefix},
            "state_dir": str(self.tmp / "state"),
            "logging": {"level": "info", "format": "json"},
            "workers": {"concurrency": 2, "retry_backoff": 0.2, "retry_backoff_max": 2},
            "watches": [{"name": "test", "root": str(self.tmp / "watch"), "engine": "pdftext",
                         "settle_seconds": 0.3, "incomplete_grace_seconds": 2,
                         **(watch or {})}],
        }
        for key, value in top.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.config_path = self.tmp / "ocr-daemon.yaml"
        self.config_path.write_text(yaml.safe_dump(data), encoding="utf-8")
        self.cfg = config_mod.load(self.config_path, environ={})

    @property
    def root(self) -> Path:
        return self.tmp / "watch"

    def folder(self, name: str) -> Path:
        return self.root / name

    @property
    def inbox(self) -> Path:
        return self.folder("inbox")

    @property
    def outbox(self) -> Path:
        return self.folder("outbox")

    @property
    def failed(self) -> Path:
        return self.folder("failed")

    @property
    def archive(self) -> Path:
        return self.folder("archive")

    @property
    def processing(self) -> Path:
        return self.folder("processing")

    def env(self, notify: NotifyListener | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OCR_DAEMON", "NOTIFY_SOCKET", "WATCHDOG_"))}
        if notify is not None:
            env["NOTIFY_SOCKET"] = str(notify.path)
        return env

    def listener(self) -> NotifyListener:
        path = Path("/tmp") / f"ocrd-notify-{uuid.uuid4().hex[:12]}.sock"
        listener = NotifyListener(path)
        self.listeners.append(listener)
        return listener

    def start(self, *args: str, notify: NotifyListener | None = None,
              extra_env: dict[str, str] | None = None, module: str = "ocr_daemon") -> Proc:
        argv = [PYTHON, "-m", module, *args, "--config", str(self.config_path)]
        env = {**self.env(notify), **(extra_env or {})}
        proc = Proc(argv, env, self.tmp / f"{args[0]}-{len(self.procs)}.log")
        self.procs.append(proc)
        return proc

    def run_daemon(self, ready: bool = True, extra_env: dict[str, str] | None = None) -> Proc:
        """`ocr-daemon run`, waiting for READY=1 (watcher up, every worker answering)."""
        listener = self.listener()
        proc = self.start("run", notify=listener, extra_env=extra_env)
        if ready:
            try:
                listener.wait("READY=1", timeout=60)
            except AssertionError:
                raise AssertionError("daemon not ready:\n" + proc.output()[-4000:]) from None
        return proc

    def drop(self, source: Path, name: str | None = None, sub: str = "") -> Path:
        """Copy a file into the inbox the way a careful client does (temp name, rename)."""
        folder = self.inbox / sub
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / (name or source.name)
        tmp = folder / f".upload-{uuid.uuid4().hex}.part"
        shutil.copyfile(source, tmp)
        os.rename(tmp, target)
        return target

    def wait_result(self, stem: str, timeout: float = 30.0, sub: str = "") -> dict[str, Any]:
        return self._wait_file(self.outbox / sub / f"{stem}.json", timeout)

    def wait_error(self, stem: str, timeout: float = 30.0, sub: str = "") -> dict[str, Any]:
        return self._wait_file(self.failed / sub / f"{stem}.error.json", timeout)

    def _wait_file(self, path: Path, timeout: float) -> dict[str, Any]:
        """The JSON file once it exists; on a timeout, where things stand (for CI logs)."""
        try:
            wait_for(path.exists, timeout, what=f"{path}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.situation()}") from None
        return dict(read_json(path))

    def situation(self, log_lines: int = 40) -> str:
        """The outbox, failed and processing folders, and the end of every process's log."""
        parts = []
        for folder in (self.outbox, self.failed, self.processing):
            names = sorted(str(p.relative_to(self.root)) for p in folder.rglob("*"))
            parts.append(f"{folder.name}/: {names[:50]}")
        for proc in self.procs:
            tail = proc.output().splitlines()[-log_lines:]
            parts.append(f"--- {proc.log_path.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def close(self) -> None:
        # The test has checked what it wanted: no graceful stop needed (tests of stopping
        # stop their daemon themselves). SIGKILL to each process group takes milliseconds.
        for proc in reversed(self.procs):
            proc.kill_group()
            proc.log.close()
        for listener in self.listeners:
            listener.close()
            listener.path.unlink(missing_ok=True)


@pytest.fixture
def key_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def make_env(tmp_path: Path, redis_server: RedisServer,
             key_prefix: str) -> Iterator[Callable[..., Env]]:
    envs: list[Env] = []

    def make(**overrides: Any) -> Env:
        env = Env(tmp_path / f"env{len(envs)}", redis_server.url, key_prefix, **overrides)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()
