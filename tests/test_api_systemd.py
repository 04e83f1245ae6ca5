"""ocr-daemon-api.service: rendered like the other units, rated by systemd-analyze, tokens as a
credential; `ocr-daemon api` speaks sd_notify and reads its tokens from the credential."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import httpx

from ocr_daemon.service import systemd_units
from ocr_daemon.service.procs import free_port
from tests.support.pdfs import make_text_pdf, page_text

from .api_support import api_env, wait_api
from .conftest import Env, wait_for
from .test_systemd import (
    EXAMPLES,
    MAX_EXPOSURE,
    WATCHDOG_ENV,
    after,
    analyze,
    assert_verified,
    exit_code,
    exposure,
    image_root,
    installed_units,
    needs_analyze,
)


def test_checked_in_api_unit_is_what_the_installer_renders() -> None:
    unit = (EXAMPLES / systemd_units.API_UNIT).read_text()
    assert unit == systemd_units.render_api(systemd_units.EXAMPLE)
    assert "LoadCredential=api-tokens:/etc/ocr-daemon/api-tokens\n" in unit
    assert "Environment=OCR_DAEMON__API__TOKENS_FILE=%d/api-tokens\n" in unit


def test_install_systemd_adds_the_api_unit_when_the_api_is_enabled(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env()
    assert installed_units(env, tmp_path / "off").returncode == 0
    assert not (tmp_path / "off" / systemd_units.API_UNIT).exists()  # api.enabled: false
    env.write_config(api={"enabled": True, "listen": "0.0.0.0:8080"})
    result = installed_units(env, tmp_path / "units")
    assert result.returncode == 0, result.stderr
    unit = (tmp_path / "units" / systemd_units.API_UNIT).read_text()
    assert f" api --config {env.config_path}\n" in unit and "Type=notify" in unit
    assert "LoadCredential=api-tokens:/etc/ocr-daemon/api-tokens\n" in unit  # public: a token
    assert f"ReadWritePaths=-{env.root} -{env.cfg.state_dir}\n" in unit  # uploads land there
    assert "ocr-daemon-api.service" in result.stdout.splitlines()[-1]  # enabled with the rest
    assert "/etc/ocr-daemon/api-tokens" in result.stdout  # the step that makes the token
    env.write_config(api={"enabled": True})  # loopback: no token needed, no credential
    assert installed_units(env, tmp_path / "local").returncode == 0
    assert "LoadCredential" not in (tmp_path / "local" / systemd_units.API_UNIT).read_text()


@needs_analyze
def test_api_unit_passes_verify_and_rates_at_most_exposure_2(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    root = image_root(tmp_path)
    shutil.copy(EXAMPLES / systemd_units.API_UNIT, root / "etc/systemd/system")
    assert_verified(analyze("verify", f"--root={root}", systemd_units.API_UNIT))
    env = make_env()
    env.write_config(api={"enabled": True, "listen": "0.0.0.0:8080"})
    assert installed_units(env, tmp_path / "units").returncode == 0
    for path in (EXAMPLES / systemd_units.API_UNIT, tmp_path / "units" / systemd_units.API_UNIT):
        level = exposure(analyze("security", "--offline=true", str(path)))
        assert level <= MAX_EXPOSURE, f"{path}: exposure {level}"


def test_api_sends_ready_watchdog_and_stopping_and_reads_its_credential(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env()
    port = free_port()
    api_env(env, port)
    env.write_config(api={"enabled": True, "listen": f"0.0.0.0:{port}"})  # needs a token
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    token = "credential-token-0123456789"
    (credentials / "api-tokens").write_text(f"# one a line\n{token}\n")
    listener = env.listener()
    proc = env.start("api", notify=listener,
                     extra_env={**WATCHDOG_ENV, "CREDENTIALS_DIRECTORY": str(credentials)})
    listener.wait("READY=1", timeout=60)
    base = f"http://127.0.0.1:{port}"
    wait_api(base, proc)  # READY=1 came once it answers
    wait_for(lambda: after(listener.drain(), "READY=1", "WATCHDOG=1") >= 2, 10,
             what="WATCHDOG=1 pings after READY=1")
    source = make_text_pdf(tmp_path / "c.pdf", [page_text(1)])
    with httpx.Client(base_url=base) as client:
        assert client.get("/v1/documents").status_code == 401
        with open(source, "rb") as fh:
            res = client.post("/v1/documents", files={"file": ("c.pdf", fh)},
                              headers={"Authorization": f"Bearer {token}"})
        assert res.status_code == 202, res.text
    proc.signal(signal.SIGTERM)
    listener.wait("STOPPING=1", timeout=20)
    assert exit_code(proc) == 0, proc.output()[-3000:]
