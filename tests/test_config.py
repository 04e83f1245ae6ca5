"""Configuration: validation names the key path and the reason; env overrides; config check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ocr_daemon import config
from ocr_daemon.errors import ConfigError
from ocr_daemon.record.layout import FOLDERS

from .conftest import RedisServer


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def problems(tmp_path: Path, data: object, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, data), environ=environ or {})
    return info.value.problems


def test_minimal_config_gets_documented_defaults_and_creates_nothing(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, {"watches": [{"name": "w", "root": "r"}]}), environ={})
    assert cfg.redis.url == "embedded"
    assert cfg.redis.key_prefix == "ocrd:"
    w = cfg.watches[0]
    assert (w.engine, w.chunk_pages, w.on_chunk_failure) == ("auto", 10, "fail")
    assert w.text_chunk_pages == 1000  # text-layer pages: most documents in one pass
    assert w.root == (tmp_path / "r").resolve()  # relative to the file
    assert cfg.state_dir == (tmp_path / "state").resolve()
    assert not w.root.exists() and not cfg.state_dir.exists()  # loading creates nothing
    assert cfg.engines.gemini.api_key_env == "GEMINI_API_KEY"


def test_root_that_cannot_be_created_names_its_key_path(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    found = problems(tmp_path, {"watches": [{"name": "w", "root": str(tmp_path / "afile" / "r")}]})
    assert found == [
        "watches[0].root: not a directory and cannot be created (Not a directory)"]


def test_root_under_a_read_only_folder_names_its_key_path(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.access(locked, os.W_OK):
        pytest.skip("running as root: every folder is writable")
    found = problems(tmp_path, {"watches": [{"name": "w", "root": str(locked / "r")}]})
    assert found == [
        "watches[0].root: not a directory and cannot be created (Permission denied)"]


def test_root_that_is_a_file_names_its_key_path(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    found = problems(tmp_path, {"watches": [{"name": "w", "root": "afile"}],
                                "state_dir": "afile/state"})
    assert found == ["state_dir: not a directory and cannot be created (Not a directory)",
                     "watches[0].root: not a directory and cannot be created (File exists)"]


def test_unknown_key_and_bad_values_are_all_reported_with_paths(tmp_path: Path) -> None:
    found = problems(tmp_path, {
        "redis": {"url": "http://x"},
        "watches": [{"name": "w", "root": "r", "enigne": "gemini", "chunk_pages": 0,
                     "engine": "magic"}],
    })
    text = "\n".join(found)
    assert "redis.url: must be 'embedded', a redis://host:port/db URL, or sentinel://" in text
    assert "watches[0].enigne: unknown key" in text
    assert "watches[0].chunk_pages: Input should be greater than or equal to 1" in text
    assert ("watches[0].engine: unknown engine 'magic'; known: auto, pdftext, tesseract, gemini"
            in text)


def test_time_limits_must_be_ordered(tmp_path: Path) -> None:
    found = problems(tmp_path, {"workers": {"soft_time_limit": 100, "time_limit": 50},
                                "watches": [{"name": "w", "root": "r"}]})
    assert found == ["workers: time_limit must be greater than soft_time_limit"]


def test_watches_must_not_overlap_or_share_names(tmp_path: Path) -> None:
    nested = problems(tmp_path, {"watches": [{"name": "a", "root": "r"},
                                             {"name": "b", "root": "r/sub"}]})
    assert nested[0].startswith("watches[1].root: overlaps watches[0].root")
    same = problems(tmp_path, {"watches": [{"name": "a", "root": "r1"},
                                           {"name": "a", "root": "r2"}]})
    assert same == ["watches[1].name: duplicate of watches[0].name"]


def test_no_watches_is_an_error(tmp_path: Path) -> None:
    assert problems(tmp_path, {"watches": []}) == [
        "watches: List should have at least 1 item after validation, not 0"]


def test_environment_overrides_keys_and_list_items(tmp_path: Path) -> None:
    path = write(tmp_path, {"watches": [{"name": "w", "root": "r"}]})
    cfg = config.load(path, environ={
        "OCR_DAEMON__REDIS__URL": "redis://127.0.0.1:7000/2",
        "OCR_DAEMON__WATCHES__0__ENGINE": "tesseract",
        "OCR_DAEMON__WATCHES__0__CHUNK_PAGES": "25",
        "OCR_DAEMON__ENGINES__GEMINI__MODEL": "gemini-x",
    })
    assert cfg.redis.url == "redis://127.0.0.1:7000/2"
    assert cfg.watches[0].engine == "tesseract"
    assert cfg.watches[0].chunk_pages == 25
    assert cfg.engines.gemini.model == "gemini-x"


def test_environment_override_of_a_missing_list_item_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, {"watches": [{"name": "w", "root": "r"}]})
    with pytest.raises(ConfigError) as info:
        config.load(path, environ={"OCR_DAEMON__WATCHES__3__ENGINE": "gemini"})
    assert info.value.problems == ["OCR_DAEMON__WATCHES__3__ENGINE: no list item 3 to override"]


def test_config_path_from_environment_variable(tmp_path: Path) -> None:
    path = write(tmp_path, {"watches": [{"name": "envfile", "root": "r"}]})
    assert config.load(None, environ={"OCR_DAEMON_CONFIG": str(path)}).watches[0].name == "envfile"
    with pytest.raises(ConfigError, match="no configuration"):
        config.load(None, environ={})


def test_config_check_prints_resolved_config_with_secrets_masked(tmp_path: Path) -> None:
    path = write(tmp_path, {"redis": {"url": "redis://:hunter2@db.example:6379/0"},
                            "watches": [{"name": "w", "root": "r"}]})
    env = {"PATH": "/usr/bin:/bin", "GEMINI_API_KEY": "AIza-very-secret"}
    done = subprocess.run([sys.executable, "-m", "ocr_daemon", "config", "check", "--config",
                           str(path)], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "hunter2" not in done.stdout and "AIza-very-secret" not in done.stdout
    assert "redis://:***@db.example:6379/0" in done.stdout
    shown = yaml.safe_load(done.stdout)
    assert shown["engines"]["gemini"]["api_key"] == "***"
    assert shown["watches"][0]["root"] == str((tmp_path / "r").resolve())


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ocr_daemon", *args], capture_output=True,
                          text=True, check=False)


def test_config_check_and_status_create_no_folders(tmp_path: Path,
                                                   redis_server: RedisServer) -> None:
    path = write(tmp_path, {"redis": {"url": redis_server.url},
                            "state_dir": "state", "watches": [{"name": "w", "root": "r"}]})
    checked = run_cli("config", "check", "--config", str(path))
    assert checked.returncode == 0, checked.stderr
    shown = run_cli("status", "--json", "--worker-timeout", "0.2", "--config", str(path))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["documents"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml"]


def test_config_check_create_makes_state_dir_and_the_five_folders(tmp_path: Path) -> None:
    path = write(tmp_path, {"state_dir": "state", "watches": [{"name": "w", "root": "r"}]})
    done = run_cli("config", "check", "--create", "--config", str(path))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "state").is_dir()
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(FOLDERS)
    assert f"# created {tmp_path.resolve() / 'r' / 'inbox'}" in done.stdout
    again = run_cli("config", "check", "--create", "--config", str(path))
    assert again.returncode == 0 and "# created" not in again.stdout


def test_config_check_reports_problems_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, {"watches": [{"name": "w", "root": "r", "engine": "nope"}]})
    done = subprocess.run([sys.executable, "-m", "ocr_daemon", "config", "check", "--config",
                           str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "watches[0].engine: unknown engine 'nope'" in done.stderr
    assert "Traceback" not in done.stderr


def test_example_config_is_valid_and_documents_every_key(tmp_path: Path) -> None:
    example = Path(__file__).parents[1] / "config" / "ocr-daemon.example.yaml"
    text = example.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    data["state_dir"] = str(tmp_path / "state")
    for w in data["watches"]:
        w["root"] = str(tmp_path / w["name"])
    cfg = config.parse(data, tmp_path)
    dumped = cfg.model_dump()

    def keys(node: object, prefix: str = "") -> set[str]:
        out: set[str] = set()
        if isinstance(node, dict):
            for k, v in node.items():
                out.add(k)
                if k not in ("engine_options",):
                    out |= keys(v, k)
        elif isinstance(node, list):
            for item in node:
                out |= keys(item, prefix)
        return out

    missing = sorted(k for k in keys(dumped) if f"{k}:" not in text)
    assert missing == []
