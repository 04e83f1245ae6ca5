"""Gemini settings: a current default model, thinking_level beside thinking_budget, checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ocr_daemon import config
from ocr_daemon.errors import ConfigError


def parse(tmp_path: Path, gemini: dict[str, Any], **watch: Any) -> config.Config:
    return config.parse({"watches": [{"name": "w", "root": str(tmp_path / "r"), **watch}],
                         "engines": {"gemini": gemini}}, tmp_path)


def problems(tmp_path: Path, gemini: dict[str, Any], **watch: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, gemini, **watch)
    return info.value.problems


def test_a_user_with_only_a_key_gets_a_current_gemini_3_model_with_minimal_thinking(
        tmp_path: Path) -> None:
    gem = parse(tmp_path, {}).engines.gemini
    assert gem.model == "gemini-3.1-flash-lite"
    assert config.gemini_generation(gem.model) == 3
    assert gem.thinking() == (None, "minimal")


def test_a_gemini_2_5_model_without_thinking_settings_sends_a_zero_budget(tmp_path: Path) -> None:
    gem = parse(tmp_path, {"model": "gemini-2.5-flash"}).engines.gemini
    assert gem.thinking() == (0, None)
    assert parse(tmp_path, {"model": "gemini-2.5-pro", "thinking_budget": 128}
                 ).engines.gemini.thinking() == (128, None)


def test_a_pro_model_without_thinking_settings_sends_its_lowest_level(tmp_path: Path) -> None:
    assert parse(tmp_path, {"model": "gemini-3.1-pro-preview"}).engines.gemini.thinking() == (
        None, "low")


def test_thinking_level_and_budget_together_is_an_error_naming_the_key(tmp_path: Path) -> None:
    assert problems(tmp_path, {"thinking_level": "low", "thinking_budget": 0}) == [
        "engines.gemini.thinking_level: set thinking_level (Gemini 3) or thinking_budget "
        "(Gemini 2.5), not both"]


def test_a_thinking_level_the_model_family_does_not_take_is_an_error(tmp_path: Path) -> None:
    [old] = problems(tmp_path, {"model": "gemini-2.5-flash", "thinking_level": "low"})
    assert old.startswith("engines.gemini.thinking_level: 'low' is not a level model "
                          "gemini-2.5-flash takes") and "thinking_budget" in old
    [pro] = problems(tmp_path, {"model": "gemini-3.1-pro-preview", "thinking_level": "minimal"})
    assert pro.startswith("engines.gemini.thinking_level: 'minimal'")
    [bad] = problems(tmp_path, {"thinking_level": "none"})
    assert bad.startswith("engines.gemini.thinking_level: Input should be 'minimal'")


def test_a_watch_model_is_checked_against_the_thinking_settings(tmp_path: Path) -> None:
    [found] = problems(tmp_path, {"thinking_level": "medium"}, engine="gemini",
                       engine_options={"model": "gemini-2.5-flash"})
    assert found.startswith("watches[0].engine_options.model: 'gemini-2.5-flash' with "
                            "engines.gemini.thinking_level: 'medium'")


def test_an_unknown_model_family_leaves_the_level_to_the_server(tmp_path: Path) -> None:
    gem = parse(tmp_path, {"model": "my-proxy-alias", "thinking_level": "high"}).engines.gemini
    assert gem.thinking() == (None, "high")


def test_a_watch_may_choose_its_own_gemini_mode_and_thinking(tmp_path: Path) -> None:
    cfg = parse(tmp_path, {}, engine="gemini", engine_options={"mode": "batch",
                                                               "thinking_level": "low"})
    assert cfg.watches[0].engine_options == {"mode": "batch", "thinking_level": "low"}
    [found] = problems(tmp_path, {"model": "gemini-2.5-flash"}, engine="gemini",
                       engine_options={"thinking_level": "low"})
    assert found.startswith("watches[0].engine_options.thinking_level: 'low' is not a level")
    [mode] = problems(tmp_path, {}, engine="gemini", engine_options={"mode": "later"})
    assert mode.startswith("watches[0].engine_options.mode: Input should be 'interactive'")
