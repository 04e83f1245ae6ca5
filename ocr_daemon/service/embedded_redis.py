"""The embedded redis-server of `ocr-daemon run`: a persistent child bound to a unix socket.

It never outlives `run`, however `run` ends: the kernel sends it SIGTERM when `run` dies
(parent-death signal), and it is started with `shutdown-on-sigterm force` (Redis 7), so it
exits even when its final save cannot be written (state dir removed, disk full), where it
would otherwise refuse to stop and stay orphaned with its socket and memory. An orphan left
by an older version, or by a Redis without that setting, is found at the next start by its
data dir and stopped before a new server starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from ocr_daemon import atomic, log, redis_conn
from ocr_daemon.errors import MissingDependency, ServiceUnavailable
from ocr_daemon.service.procs import die_with_parent, free_port

INSTALL_HINT = (
    "redis-server is not installed. Install it with `sudo apt-get install redis-server` "
    "(Debian/Ubuntu), `sudo dnf install redis` (Fedora) or `brew install redis` (macOS), "
    "or set redis.url to an existing Redis."
)
SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes
ORPHAN_STOP_SECONDS = 10.0


def redis_major(binary: str) -> int:
    """The major version of ``binary`` (0 when it cannot be told)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                         check=False).stdout
    found = re.search(r"v=(\d+)\.", out)
    return int(found.group(1)) if found else 0


def servers_of(data_dir: Path) -> list[int]:
    """Process ids of redis-servers working in ``data_dir`` (Linux /proc). Redis rewrites its
    command line, but it runs in the folder given by ``--dir``, even once that is deleted."""
    wanted = {str(data_dir), f"{data_dir} (deleted)"}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() != "redis-server":
                continue
            if os.readlink(f"/proc/{entry}/cwd") in wanted:
                found.append(int(entry))
        except OSError:
            continue
    return found


def stop_orphans(data_dir: Path) -> list[int]:
    """SIGTERM, then SIGKILL after ORPHAN_STOP_SECONDS, every server of ``data_dir``."""
    pids = servers_of(data_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + ORPHAN_STOP_SECONDS
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _alive(p)]
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return servers_of(data_dir)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class EmbeddedRedis:
    def __init__(self, state_dir: Path, url_file: Path) -> None:
        self.state_dir = state_dir
        self.url_file = url_file
        self.data_dir = state_dir / "redis"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._args: list[str] = []

    def _command(self) -> tuple[list[str], str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise MissingDependency(INSTALL_HINT, hint=INSTALL_HINT)
        sock = self.state_dir / "redis.sock"
        exit_anyway: list[str] = []
        if redis_major(binary) >= 7:  # exit on SIGTERM even if the last save fails
            exit_anyway = ["--shutdown-on-sigterm", "force", "--shutdown-on-sigint", "force"]
        args = [binary, "--dir", str(self.data_dir), "--bind", "127.0.0.1", *exit_anyway,
                "--appendonly", "yes", "--appendfsync", "everysec",
                "--maxmemory-policy", "noeviction", "--save", "300 10",
                "--daemonize", "no", "--protected-mode", "yes",
                "--logfile", str(self.data_dir / "redis.log"),
                "--pidfile", str(self.data_dir / "redis.pid")]
        if len(os.fsencode(str(sock))) <= SOCKET_PATH_MAX:
            sock.unlink(missing_ok=True)
            return [*args, "--port", "0", "--unixsocket", str(sock),
                    "--unixsocketperm", "700"], f"unix://{sock}"
        port = free_port()
        return [*args, "--port", str(port)], f"redis://127.0.0.1:{port}/0"

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if stopped := servers_of(self.data_dir):  # left by a run that died (instance lock held)
            log.get().warning("redis_orphan_stopped", pids=stopped)
            stop_orphans(self.data_dir)
        if not self._args:
            self._args, self.url = self._command()
        self.proc = subprocess.Popen(self._args, stdin=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent, start_new_session=True)
        client = redis_conn.client(self.url)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():
                    break
            except redis.exceptions.BusyLoadingError:
                pass  # replaying the append-only file after a restart
            except redis.RedisError:
                if self.proc.poll() is not None:
                    raise ServiceUnavailable(
                        f"redis-server exited with {self.proc.returncode}; see "
                        f"{self.data_dir / 'redis.log'}") from None
            if time.monotonic() > deadline:
                raise ServiceUnavailable("redis-server did not answer within 30 s")
            time.sleep(0.05)
        atomic.write_text(self.url_file, self.url + "\n")
        log.get().info("redis_started", url=self.url, pid=self.proc.pid)
        return self.url

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: Redis flushes the append-only file and exits."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            self.url_file.unlink()
        log.get().info("redis_stopped", returncode=self.proc.returncode)
