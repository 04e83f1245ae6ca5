"""The embedded Redis never outlives `ocr-daemon run`, however `run` dies and whether or not
its last save can be written; the next start begins cleanly."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.support.pdfs import make_text_pdf

from .conftest import Env, alive, descendants, wait_for


def _redis_of(pid: int) -> int:
    servers = [p for p in descendants(pid)
               if Path(f"/proc/{p}/comm").read_text().strip() == "redis-server"]
    assert len(servers) == 1, servers
    return servers[0]


def test_killed_run_takes_its_redis_along_even_with_its_state_dir_gone(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(redis={"url": "embedded"})
    run = env.run_daemon()
    redis_pid = _redis_of(run.pid)
    # The final save on SIGTERM cannot be written now: Redis without `shutdown-on-sigterm
    # force` refuses to exit and stays, orphaned in a session of its own.
    shutil.rmtree(env.tmp / "state" / "redis")
    run.popen.send_signal(signal.SIGKILL)
    run.popen.wait(10)
    wait_for(lambda: not alive(redis_pid), 20, what="the embedded redis-server to exit")
    again = env.run_daemon()  # starts cleanly on the same state dir
    env.drop(make_text_pdf(tmp_path / "after.pdf", ["after the crash"]))
    assert env.wait_result("after", timeout=60)["pages"][0]["text"] == "after the crash"
    assert _redis_of(again.pid) != redis_pid


def test_a_redis_left_running_by_an_earlier_run_is_stopped_at_the_next_start(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(redis={"url": "embedded"})
    data_dir = env.tmp / "state" / "redis"
    data_dir.mkdir(parents=True)
    # An orphan as an older version left it: no exit-anyway setting, its own session.
    orphan = subprocess.Popen(["redis-server", "--port", "0", "--dir", str(data_dir),
                               "--unixsocket", str(env.tmp / "orphan.sock"),
                               "--daemonize", "no", "--logfile", str(env.tmp / "orphan.log")],
                              start_new_session=True)
    try:
        wait_for(lambda: (env.tmp / "orphan.sock").exists(), 10, what="the orphan to listen")
        run = env.run_daemon()
        assert orphan.wait(20) is not None
        assert "redis_orphan_stopped" in run.output()
        env.drop(make_text_pdf(tmp_path / "fresh.pdf", ["fresh start"]))
        assert env.wait_result("fresh", timeout=60)["pages"][0]["text"] == "fresh start"
    finally:
        if orphan.poll() is None:
            orphan.kill()
