"""Output names: stems stay unique, long names fit, nothing overwrites another document's files."""

from __future__ import annotations

import os
from pathlib import Path

from ocr_daemon import atomic
from ocr_daemon.config import WatchConfig
from ocr_daemon.record.layout import (
    WatchPaths,
    free_name,
    reserve_stem,
    split_name,
    stem_candidates,
)


def paths(tmp_path: Path) -> WatchPaths:
    p = WatchPaths.of(WatchConfig(name="w", root=tmp_path))
    p.ensure()
    return p


def test_split_name_keeps_dot_files_and_inner_dots() -> None:
    assert split_name("report.final.pdf") == ("report.final", ".pdf")
    assert split_name("README") == ("README", "")
    assert split_name(".hidden") == (".hidden", "")


def test_stem_candidates_fit_255_bytes_with_every_suffix() -> None:
    name = "é" * 126 + ".pdf"  # 252 + 4 bytes: at the limit already
    plain, suffixed = stem_candidates(name, "20261130T000000Z-abcdef12")
    assert plain and set(plain) == {"é"}  # the name itself, cut on a character boundary
    assert suffixed.endswith("-abcdef12") and set(suffixed[:-9]) == {"é"}
    assert len(suffixed[:-9]) < len(plain)  # cut further to make room for the suffix
    for stem in (plain, suffixed):
        assert len(os.fsencode(stem + ".progress.json")) <= 255
    assert stem_candidates("scan.pdf", "20261130T000000Z-abcdef12") == ["scan", "scan-abcdef12"]


def test_second_document_with_the_same_stem_gets_a_suffix(tmp_path: Path) -> None:
    p = paths(tmp_path)
    first = reserve_stem(p, "", "scan.pdf", "d1-00000001", b'{"doc_id": "d1-00000001"}')
    second = reserve_stem(p, "", "scan.png", "d2-00000002", b'{"doc_id": "d2-00000002"}')
    assert first.stem == "scan"
    assert second.stem == "scan-00000002"
    again = reserve_stem(p, "", "scan.pdf", "d1-00000001", b"{}")
    assert again.stem == "scan"  # idempotent for the holder


def test_stem_of_a_failed_document_is_not_reused(tmp_path: Path) -> None:
    p = paths(tmp_path)
    (p.failed / "scan.error.json").write_text("{}")
    assert reserve_stem(p, "", "scan.pdf", "d3-00000003", b"{}").stem == "scan-00000003"


def test_free_name_never_returns_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_text("x")
    assert free_name(tmp_path, "a.pdf", "doc-12345678") == tmp_path / "a-12345678.pdf"
    assert free_name(tmp_path, "b.pdf", "doc-12345678") == tmp_path / "b.pdf"


def test_create_exclusive_makes_the_file_whole_once_and_leaves_no_temp_file(
        tmp_path: Path) -> None:
    target = tmp_path / "out" / "scan.progress.json"
    assert atomic.create_exclusive(target, b'{"state": "queued"}\n', durable=False)
    assert not atomic.create_exclusive(target, b'{"state": "other"}\n')
    assert target.read_bytes() == b'{"state": "queued"}\n'
    assert os.stat(target).st_nlink == 1  # the temp name it was linked from is gone
    assert sorted(p.name for p in target.parent.iterdir()) == ["scan.progress.json"]
