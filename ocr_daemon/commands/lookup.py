"""Find a document from what a person types: its id, its original's path, or a sidecar."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ocr_daemon import atomic
from ocr_daemon.config import Config, WatchConfig
from ocr_daemon.errors import NotFound
from ocr_daemon.record.disk import Manifest
from ocr_daemon.record.layout import WatchPaths

DOC_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


@dataclass(frozen=True)
class Found:
    watch: WatchConfig
    paths: WatchPaths
    doc_id: str


def _watch_of(cfg: Config, path: Path) -> tuple[WatchConfig, WatchPaths, Path] | None:
    for watch in cfg.watches:
        paths = WatchPaths.of(watch)
        if paths.root == path or paths.root in path.parents:
            return watch, paths, path.relative_to(paths.root)
    return None


def in_flight(cfg: Config, target: str) -> Found:
    """The document in processing/ that ``target`` names; NotFound otherwise."""
    if DOC_ID.match(target):
        for watch in cfg.watches:
            paths = WatchPaths.of(watch)
            if paths.doc(target).manifest.exists():
                return Found(watch, paths, target)
        raise NotFound(f"no document {target} in flight (it may have ended)")
    path = Path(os.path.abspath(target))
    located = _watch_of(cfg, path)
    if located is None:
        raise NotFound(f"{target} is not under the root of any watch")
    watch, paths, rel = located
    top, rest = rel.parts[0], Path(*rel.parts[1:]) if len(rel.parts) > 1 else Path()
    if top == paths.processing.name and rest.parts and paths.doc(rest.parts[0]).manifest.exists():
        return Found(watch, paths, rest.parts[0])
    sidecar = path.name.endswith(".json") and path.exists()
    if top in (paths.outbox.name, paths.failed.name) and sidecar:
        doc_id = str(atomic.read_json(path).get("doc_id", ""))
        if paths.doc(doc_id).manifest.exists():
            return Found(watch, paths, doc_id)
        raise NotFound(f"document {doc_id} of {target} is not in flight (it has ended)")
    if top == paths.inbox.name:
        for entry in paths.doc_dirs():
            try:
                manifest = Manifest.load(paths.doc(entry.name).manifest)
            except (OSError, ValueError, TypeError):
                continue
            if manifest.rel_path == rest.as_posix():
                return Found(watch, paths, manifest.doc_id)
        if path.exists():
            raise NotFound(f"{target} is still in the inbox: not taken yet (delete it instead)")
    raise NotFound(f"no document in flight matches {target}")
