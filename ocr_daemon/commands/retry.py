"""`ocr-daemon retry`: send documents in failed/ back through the pipeline."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from ocr_daemon import atomic
from ocr_daemon.commands.submit import publish_in
from ocr_daemon.config import Config, WatchConfig
from ocr_daemon.errors import NotFound, StorageError
from ocr_daemon.record.layout import WatchPaths, split_name


def _error_files(cfg: Config, watch_name: str | None) -> list[tuple[WatchConfig, Path]]:
    found = []
    for watch in cfg.watches:
        if watch_name in (None, watch.name):
            found += [(watch, p) for p in sorted(WatchPaths.of(watch).failed.rglob("*.error.json"))]
    return found


def _error_file_for(cfg: Config, target: Path) -> tuple[WatchConfig, Path]:
    path = Path(os.path.abspath(target))
    for watch in cfg.watches:
        paths = WatchPaths.of(watch)
        if paths.failed not in path.parents:
            continue
        if path.name.endswith(".error.json"):
            return watch, path
        sidecar = path.parent / (split_name(path.name)[0] + ".error.json")
        if sidecar.exists():
            return watch, sidecar
    raise NotFound(f"{target} is not a failed document (an original in failed/ or its "
                   ".error.json)")


def retry_one(watch: WatchConfig, error_file: Path) -> Path:
    """Move the original back into the inbox under its first name; drop the old sidecars."""
    hidden, name = withdraw(watch, error_file)
    return publish_in(hidden, hidden.parent, name)


def withdraw(watch: WatchConfig, error_file: Path) -> tuple[Path, str]:
    """Move a failed original to a hidden name in its inbox folder (the watcher ignores it)
    and drop its old sidecars; returns that file and the name it had."""
    paths = WatchPaths.of(watch)
    record: dict[str, Any] = atomic.read_json(error_file)
    if not record.get("original"):
        raise NotFound(f"{error_file}: its original was deleted")
    original = paths.root / record["original"]
    if not original.exists():
        raise NotFound(f"{error_file}: the original {original} is not there any more")
    rel = Path(record["source"]["path"]).parent
    folder = paths.inbox / rel
    try:
        folder.mkdir(parents=True, exist_ok=True)
        hidden = folder / atomic.temp_name()  # ignored by the watcher until it is renamed
        os.rename(original, hidden)
    except OSError as exc:
        raise StorageError(f"cannot move {original} back to {folder}: {exc.strerror}") from exc
    stem = error_file.name[: -len(".error.json")]
    for name in (f"{stem}.progress.json", f"{stem}.partial.txt", error_file.name):
        with contextlib.suppress(FileNotFoundError):
            (error_file.parent / name).unlink()
    return hidden, str(record["source"]["name"])


def retry(cfg: Config, targets: list[Path], every: bool,
          watch_name: str | None) -> list[Path]:
    chosen = (_error_files(cfg, watch_name) if every
              else [_error_file_for(cfg, t) for t in targets])
    return [retry_one(watch, error_file) for watch, error_file in chosen]
