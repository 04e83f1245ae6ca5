"""Engine plugins (engines.plugins): more engine names, checked at start, built by the registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ocr_daemon import config
from ocr_daemon.engines import registry
from ocr_daemon.engines.base import EngineContext, Page, PageRequest
from ocr_daemon.errors import ConfigError, EngineUnavailable, PageFailed
from tests.support.engines import PLUGIN, SleepingEngine
from tests.support.pdfs import make_text_pdf, page_text


def parse(tmp_path: Path, watch: dict[str, Any], plugins: list[str]) -> config.Config:
    return config.parse({"state_dir": str(tmp_path / "state"),
                         "engines": {"plugins": plugins},
                         "watches": [{"name": "w", "root": str(tmp_path / "w"), **watch}]},
                        tmp_path)


def problems(tmp_path: Path, watch: dict[str, Any], plugins: list[str]) -> str:
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, watch, plugins)
    return "\n".join(info.value.problems)


def test_builtin_engine_names_in_the_config_are_the_registrys() -> None:
    assert set(config.BUILTIN_ENGINES) == set(registry.REGISTRY)


def test_a_plugins_engine_is_built_by_the_registry_with_its_engine_options(
        tmp_path: Path) -> None:
    cfg = parse(tmp_path, {"engine": "sleeping", "engine_options": {"failing_pages": [2]}},
                [PLUGIN])
    engine = registry.build(EngineContext(cfg, cfg.watches[0]))
    assert isinstance(engine, SleepingEngine)
    source = make_text_pdf(tmp_path / "doc.pdf", [page_text(1), page_text(2)])
    one = engine.extract(PageRequest(source, "application/pdf", (Page(1, 0),)))
    assert [(p.number, p.text) for p in one.pages] == [(1, page_text(1))]
    with pytest.raises(PageFailed, match="page 2"):  # the fault its options asked for
        engine.extract(PageRequest(source, "application/pdf", (Page(1, 0), Page(2, 1))))


def test_a_plugin_engine_rejects_options_it_does_not_have_when_built(tmp_path: Path) -> None:
    cfg = parse(tmp_path, {"engine": "sleeping", "engine_options": {"latenzy": 1}}, [PLUGIN])
    with pytest.raises(EngineUnavailable, match="latenzy"):
        registry.build(EngineContext(cfg, cfg.watches[0]))


def test_a_plugins_engine_name_is_unknown_without_the_plugin(tmp_path: Path) -> None:
    found = problems(tmp_path, {"engine": "sleeping"}, [])
    assert "watches[0].engine: unknown engine 'sleeping'" in found


def test_builtin_engines_still_reject_unknown_options(tmp_path: Path) -> None:
    found = problems(tmp_path, {"engine": "pdftext", "engine_options": {"latency": 1}},
                     [PLUGIN])
    assert "watches[0].engine_options: unknown option(s) ['latency']" in found


def test_plugins_that_cannot_be_used_are_config_errors_naming_the_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "engines.plugins[1]: cannot import 'no_such_plugin'" in problems(
        tmp_path, {}, [PLUGIN, "no_such_plugin"])
    assert "engines.plugins[0]: 'json' has no ENGINES mapping" in problems(tmp_path, {}, ["json"])
    (tmp_path / "shadowing_plugin.py").write_text(
        "ENGINES = {'pdftext': lambda ctx: None}\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "engines.plugins[0]: engine 'pdftext' of 'shadowing_plugin' is already defined" in (
        problems(tmp_path, {}, ["shadowing_plugin"]))


def test_config_check_accepts_a_plugin_engine_and_names_an_unknown_one(tmp_path: Path) -> None:
    def check(engine: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / f"{engine}.yaml"
        path.write_text(f"state_dir: state\nengines: {{plugins: [{PLUGIN}]}}\n"
                        f"watches: [{{name: w, root: r, engine: {engine}}}]\n", encoding="utf-8")
        return subprocess.run([sys.executable, "-m", "ocr_daemon", "config", "check",
                               "--config", str(path)], capture_output=True, text=True,
                              check=False, timeout=60)

    assert check("sleeping").returncode == 0
    bad = check("sleepy")
    assert bad.returncode == 2
    assert ("watches[0].engine: unknown engine 'sleepy'; known: auto, pdftext, tesseract, "
            "gemini, sleeping") in bad.stderr
