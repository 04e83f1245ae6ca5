"""systemd: units that systemd-analyze accepts and rates; each process speaks sd_notify."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from ocr_daemon.cli import main
from ocr_daemon.delivery.worker_notify import heartbeat_interval, managed_here
from ocr_daemon.errors import ExitCode
from ocr_daemon.service import systemd_units

from .conftest import PYTHON, Env, Proc, RedisServer, wait_for

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "systemd"
UNITS = (systemd_units.WATCH_UNIT, systemd_units.WORKER_UNIT)
ANALYZE = shutil.which("systemd-analyze")
MAX_EXPOSURE = 1.3  # what README says `systemd-analyze security` rates the units
WATCHDOG_ENV = {"WATCHDOG_USEC": "1000000"}  # 1 s: pings every 0.5 s (the worker: every 1 s)

# Skipped on a developer's machine without it; in CI (CI set) a missing tool fails the tests:
# scripts/setup --test installs it (Debian's systemd package).
needs_analyze = pytest.mark.skipif(ANALYZE is None and not os.environ.get("CI"),
                                   reason="systemd-analyze is not installed")


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    if ANALYZE is None:
        pytest.fail("systemd-analyze is required in CI: scripts/setup --test installs it "
                    "(Debian package systemd)")
    return subprocess.run([ANALYZE, "--no-pager", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def assert_verified(result: subprocess.CompletedProcess[str]) -> None:
    """verify exits 0 on ignored settings too: none of its lines may be about our units."""
    output = result.stdout + result.stderr
    ours = [line for line in output.splitlines() if "ocr-daemon" in line]
    assert result.returncode == 0 and not ours, output


def exposure(result: subprocess.CompletedProcess[str]) -> float:
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


def installed_units(env: Env, target: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`ocr-daemon install-systemd` as an administrator runs it (a real process)."""
    return subprocess.run(
        [PYTHON, "-m", "ocr_daemon", "install-systemd", "--config", str(env.config_path),
         "--dir", str(target), *extra],
        capture_output=True, text=True, timeout=60, env=env.env(), check=False)


def image_root(tmp_path: Path) -> Path:
    """A root with the host's system units, the examples and a stub at their ExecStart path.

    The examples name /opt/ocr-daemon/venv/bin/ocr-daemon; `verify --root` resolves units and
    executables inside this root, as for an image being built.
    """
    root = tmp_path / "root"
    system = next(p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
                  if (p / "sysinit.target").exists())
    shutil.copytree(system, root / system.relative_to("/"), symlinks=True)
    target = root / "etc/systemd/system"
    target.mkdir(parents=True)
    for name in UNITS:
        shutil.copy(EXAMPLES / name, target / name)
    stub = root / systemd_units.EXAMPLE.executable.relative_to("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    return root


# --- the unit files ----------------------------------------------------------------------


def test_install_systemd_writes_units_for_this_install_and_prints_the_next_steps(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env()
    target = tmp_path / "units"
    result = installed_units(env, target, "--shared-group", "scanners")
    assert result.returncode == 0, result.stderr
    watch = (target / systemd_units.WATCH_UNIT).read_text()
    worker = (target / systemd_units.WORKER_UNIT).read_text()
    program = Path(sys.executable).parent / "ocr-daemon"
    assert f"ExecStart={program} watch --config {env.config_path}\n" in watch
    assert (f"ExecStart={program} worker --config {env.config_path} --queues %I "
            "--name ocrd-%i@%H\n") in worker
    for unit in (watch, worker):
        assert f"ReadWritePaths=-{env.root} -{env.cfg.state_dir}\n" in unit
        for setting in ("Type=notify", "NotifyAccess=main", "WatchdogSec=60", "KillMode=mixed",
                        "Restart=on-failure", "User=ocr-daemon", "Group=ocr-daemon",
                        "SupplementaryGroups=scanners", "UMask=0007", "ProtectSystem=strict",
                        "CapabilityBoundingSet=\n", "Wants=network-online.target "
                        "redis-server.service"):
            assert setting in unit
    # A warm shutdown outlasts the task hard limit (workers.time_limit, 660 s by default).
    assert f"TimeoutStopSec={env.cfg.workers.time_limit + 60}\n" in worker
    assert "LoadCredential" not in worker  # no watch uses gemini
    assert "systemctl daemon-reload && systemctl enable --now ocr-daemon-watch.service " \
           "ocr-daemon-worker@documents.service ocr-daemon-worker@chunks.service" in result.stdout
    assert "PrivateTmp= gives the service its own /tmp" in result.stderr  # tmp_path is in /tmp


def test_gemini_watches_get_the_api_key_as_a_credential(make_env: Callable[..., Env],
                                                         tmp_path: Path) -> None:
    env = make_env(watch={"engine": "gemini"})
    result = installed_units(env, tmp_path / "units")
    assert result.returncode == 0, result.stderr
    worker = (tmp_path / "units" / systemd_units.WORKER_UNIT).read_text()
    assert "LoadCredential=gemini-api-key:/etc/ocr-daemon/gemini-api-key\n" in worker
    assert "Environment=OCR_DAEMON__ENGINES__GEMINI__API_KEY_FILE=%d/gemini-api-key\n" in worker
    assert "LoadCredential" not in (tmp_path / "units" / systemd_units.WATCH_UNIT).read_text()


def test_a_configured_key_file_becomes_the_credential_source(make_env: Callable[..., Env],
                                                              tmp_path: Path) -> None:
    env = make_env(engines={"gemini": {"api_key_file": "/etc/secrets/gemini.key"}})
    result = installed_units(env, tmp_path / "units")
    assert result.returncode == 0, result.stderr
    worker = (tmp_path / "units" / systemd_units.WORKER_UNIT).read_text()
    assert "LoadCredential=gemini-api-key:/etc/secrets/gemini.key\n" in worker
    assert "/etc/secrets/gemini.key" in result.stdout  # the step that writes it, mode 0600


def test_passwords_files_become_credentials_of_both_units(make_env: Callable[..., Env],
                                                          tmp_path: Path) -> None:
    secret = tmp_path / "pdf-passwords"
    secret.write_text("hunter2\n", encoding="utf-8")
    secret.chmod(0o600)
    env = make_env(watch={"passwords_file": str(secret)})
    result = installed_units(env, tmp_path / "units")
    assert result.returncode == 0, result.stderr
    for unit in (systemd_units.WATCH_UNIT, systemd_units.WORKER_UNIT):
        text = (tmp_path / "units" / unit).read_text()
        assert f"LoadCredential=pdf-passwords-test:{secret}\n" in text
        assert ("Environment=OCR_DAEMON__WATCHES__0__PASSWORDS_FILE=%d/pdf-passwords-test\n"
                in text)
        assert "hunter2" not in text


def test_install_systemd_refuses_the_embedded_redis(make_env: Callable[..., Env],
                                                     tmp_path: Path) -> None:
    env = make_env(redis={"url": "embedded"})
    result = CliRunner().invoke(main, ["install-systemd", "--config", str(env.config_path),
                                       "--dir", str(tmp_path / "units")])
    assert result.exit_code == 2
    assert "redis.url: 'embedded' only works with `ocr-daemon run`" in result.output
    assert not (tmp_path / "units").exists()


def test_install_systemd_refuses_a_user_name_a_unit_cannot_hold_with_its_own_exit_code(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env()
    result = CliRunner().invoke(main, ["install-systemd", "--config", str(env.config_path),
                                       "--dir", str(tmp_path / "units"), "--user", "a b"])
    assert result.exit_code == ExitCode.INSTALL_REFUSED == 7
    assert "use letters, digits" in result.output
    assert not (tmp_path / "units").exists()


def test_checked_in_units_are_what_the_installer_renders_for_the_example() -> None:
    assert (EXAMPLES / systemd_units.WATCH_UNIT).read_text() == \
        systemd_units.render_watch(systemd_units.EXAMPLE)
    assert (EXAMPLES / systemd_units.WORKER_UNIT).read_text() == \
        systemd_units.render_worker(systemd_units.EXAMPLE)


@needs_analyze
def test_installed_units_pass_systemd_analyze_verify(make_env: Callable[..., Env],
                                                     tmp_path: Path) -> None:
    env = make_env()
    assert installed_units(env, tmp_path / "units", "--shared-group", "scanners").returncode == 0
    worker = tmp_path / "units" / systemd_units.WORKER_UNIT
    instance = tmp_path / "units" / "ocr-daemon-worker@documents.service"
    shutil.copy(worker, instance)
    assert_verified(analyze("verify", str(tmp_path / "units" / systemd_units.WATCH_UNIT),
                            str(worker), str(instance)))


@needs_analyze
def test_checked_in_units_pass_systemd_analyze_verify_in_an_image_root(tmp_path: Path) -> None:
    root = image_root(tmp_path)
    assert_verified(analyze("verify", f"--root={root}", *UNITS,
                            "ocr-daemon-worker@chunks.service"))


@needs_analyze
def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The verify checks above would see a bad setting (verify itself still exits 0)."""
    root = image_root(tmp_path)
    unit = root / "etc/systemd/system" / systemd_units.WATCH_UNIT
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=bogus"))
    with pytest.raises(AssertionError, match="protect system"):
        assert_verified(analyze("verify", f"--root={root}", systemd_units.WATCH_UNIT))


@needs_analyze
def test_every_unit_rates_at_most_the_exposure_readme_claims(make_env: Callable[..., Env],
                                             tmp_path: Path) -> None:
    env = make_env()
    assert installed_units(env, tmp_path / "units").returncode == 0
    files = [EXAMPLES / n for n in UNITS] + [tmp_path / "units" / n for n in UNITS]
    for path in files:
        level = exposure(analyze("security", "--offline=true", str(path)))
        assert level <= MAX_EXPOSURE, f"{path}: exposure {level}"


# --- the notify protocol -----------------------------------------------------------------


def after(messages: list[str], first: str, then: str) -> int:
    """How many ``then`` messages came after the first ``first``."""
    return messages[messages.index(first):].count(then) if first in messages else 0


def exit_code(proc: Proc, timeout: float = 30.0) -> int:
    """Wait for the process to end by itself (Proc.stop would signal it once more)."""
    return proc.popen.wait(timeout)


def test_watch_sends_ready_watchdog_and_stopping(make_env: Callable[..., Env]) -> None:
    env = make_env()
    listener = env.listener()
    proc = env.start("watch", notify=listener, extra_env=WATCHDOG_ENV)
    listener.wait("READY=1", timeout=30)
    wait_for(lambda: after(listener.drain(), "READY=1", "WATCHDOG=1") >= 2, 10,
             what="WATCHDOG=1 pings after READY=1")
    assert "STOPPING=1" not in listener.messages
    proc.signal(signal.SIGTERM)
    listener.wait("STOPPING=1", timeout=20)
    assert exit_code(proc) == 0, proc.log_path.read_text()[-3000:]


def test_worker_sends_ready_watchdog_and_stopping(make_env: Callable[..., Env]) -> None:
    env = make_env()
    listener = env.listener()
    proc = env.start("worker", notify=listener, extra_env=WATCHDOG_ENV)
    try:
        listener.wait("READY=1", timeout=40)
    except AssertionError:
        raise AssertionError("worker not ready:\n" + proc.output()[-3000:]) from None
    assert not any(m.startswith("WATCHDOG=1") for m in
                   listener.messages[:listener.messages.index("READY=1")])
    wait_for(lambda: after(listener.drain(), "READY=1", "WATCHDOG=1") >= 2, 10,
             what="WATCHDOG=1 heartbeats after READY=1")
    proc.signal(signal.SIGTERM)
    listener.wait("STOPPING=1", timeout=20)
    assert exit_code(proc) == 0, proc.log_path.read_text()[-3000:]


def test_worker_watchdog_pauses_while_the_consumer_has_no_broker(tmp_path: Path) -> None:
    """The pings come from the consumer's event loop: no broker, no loop, no WATCHDOG=1."""
    server = RedisServer(tmp_path / "redis")
    env = Env(tmp_path / "env", server.url, "wd:")
    try:
        listener = env.listener()
        worker = env.start("worker", notify=listener, extra_env=WATCHDOG_ENV)
        listener.wait("READY=1", timeout=40)
        listener.wait("WATCHDOG=1", timeout=10)
        server.stop()
        # Once the consumer knows the broker is gone (however long a busy host takes to see
        # it), its loop is reconnecting: no heartbeat from then on.
        wait_for(lambda: "Connection to broker lost" in worker.output(), 60,
                 what="the worker noticing the broker is gone")
        seen = len(listener.drain())
        time.sleep(2.5)  # two heartbeat periods and more
        assert listener.drain()[seen:].count("WATCHDOG=1") == 0
        server.start()
        wait_for(lambda: listener.drain()[seen:].count("WATCHDOG=1") >= 1, 20,
                 what="WATCHDOG=1 again once the broker is back")
    finally:
        env.close()
        server.stop()


def test_only_the_process_systemd_started_notifies() -> None:
    """A worker child of `ocr-daemon run` inherits NOTIFY_SOCKET but is not the service."""
    assert managed_here({"NOTIFY_SOCKET": "/run/x"})
    assert managed_here({"NOTIFY_SOCKET": "/run/x", "SYSTEMD_EXEC_PID": str(os.getpid())})
    assert not managed_here({"NOTIFY_SOCKET": "/run/x", "SYSTEMD_EXEC_PID": "1"})
    assert not managed_here({})


def test_heartbeats_speed_up_for_a_short_watchdog() -> None:
    assert heartbeat_interval({"WATCHDOG_USEC": "1000000"}) == 1
    assert heartbeat_interval({"WATCHDOG_USEC": "60000000"}) is None  # Celery's 2 s will do
    assert heartbeat_interval({}) is None
