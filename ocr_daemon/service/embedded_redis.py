"""The embedded redis-server of `ocr-daemon run`: a persistent child bound to a unix socket."""

from __future__ import annotations

import contextlib
import os
import shutil
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
        args = [binary, "--dir", str(self.data_dir), "--bind", "127.0.0.1",
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
