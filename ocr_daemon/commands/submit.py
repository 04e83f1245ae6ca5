"""`ocr-daemon submit`: copy files into an inbox safely (hidden temporary name, then rename)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ocr_daemon import atomic
from ocr_daemon.config import WatchConfig
from ocr_daemon.errors import ConfigError, StorageError
from ocr_daemon.record.layout import NAME_MAX, WatchPaths, fit, split_name


def submit(watch: WatchConfig, files: list[Path], sub: str = "") -> list[Path]:
    """Copy ``files`` into the watch's inbox; returns where each landed.

    The copy is written under a hidden temporary name the watcher ignores, flushed, then
    linked to its final name without replacing anything there: a file already waiting under
    that name gets a numbered sibling instead.
    """
    paths = WatchPaths.of(watch)
    folder = (paths.inbox / sub).resolve()
    if sub and (not watch.recursive or paths.inbox.resolve() not in folder.parents):
        raise ConfigError([f"--sub {sub!r}: needs a recursive watch and a folder inside the inbox"])
    landed = []
    for source in files:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / atomic.temp_name()
            shutil.copyfile(source, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            landed.append(publish_in(tmp, folder, source.name))
        except OSError as exc:
            raise StorageError(f"cannot copy {source} into {folder}: {exc.strerror}") from exc
    return landed


def publish_in(tmp: Path, folder: Path, name: str) -> Path:
    """Give the hidden file ``tmp`` its name in ``folder``, never replacing a file there."""
    stem, ext = split_name(name)
    for n in range(1000):
        candidate = name if n == 0 else f"{fit(stem, NAME_MAX - len(ext) - 5)}-{n}{ext}"
        target = folder / candidate
        try:
            os.link(tmp, target)  # fails if the name exists: never replaces a waiting file
        except FileExistsError:
            continue
        tmp.unlink()
        atomic.fsync_dir(folder)
        return target
    raise StorageError(f"no free name for {name} in {folder}")
