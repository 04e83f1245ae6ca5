"""Atomic file operations: temp file in the same folder, fsync, rename, fsync the folder."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from ocr_daemon.errors import StorageError

TEMP_PREFIX = ".ocrd-"
TEMP_SUFFIX = ".tmp"


def temp_name() -> str:
    """A short hidden temp name (short so that long target names still fit in 255 bytes)."""
    return f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"


def fsync_dir(path: Path) -> None:
    """Make the folder's entries (creations, renames, removals) durable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _storage_error("sync the folder", path, exc) from exc


def _storage_error(action: str, path: Path, exc: OSError) -> StorageError:
    return StorageError(f"cannot {action} {path}: {exc.strerror or exc}")


def write_bytes(path: Path, data: bytes, create_parents: bool = True,
                durable: bool = True, sync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one.

    ``create_parents=False`` for files inside a document's record: a record removed by an
    ending (a cancel) must not be brought back by a late writer. ``durable=False`` skips the
    two fsyncs for files that are rewritten anyway after a crash (progress, dispatch notes):
    still atomic for readers, just not guaranteed to survive a power cut. ``sync_dir=False``
    when the caller fsyncs the folder itself after more changes in it.
    """
    tmp = path.parent / temp_name()
    try:
        try:
            _write_new(tmp, data, durable)
        except FileNotFoundError:
            if not create_parents:
                raise
            _make_parents(path)
            _write_new(tmp, data, durable)
        os.replace(tmp, path)
        if durable and sync_dir:
            fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _storage_error("write", path, exc) from exc


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def dumps(obj: Any, compact: bool = False) -> bytes:
    """Indented for the files people read (outbox/, failed/); ``compact`` for the records in
    processing/ that only the daemon reads: json's C encoder serves only unindented output,
    and the indented one cost about a millisecond of CPU per small document's records."""
    if compact:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return (json.dumps(obj, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def write_json(path: Path, obj: Any, create_parents: bool = True,
               durable: bool = True, sync_dir: bool = True, compact: bool = False) -> None:
    write_bytes(path, dumps(obj, compact), create_parents, durable, sync_dir)


def read_json(path: Path) -> Any:
    with open(path, "rb") as fh:
        return json.loads(fh.read())


def create_exclusive(path: Path, data: bytes, durable: bool = True) -> bool:
    """Create ``path`` whole, only if it does not exist; False when another holds it.

    The data goes to a temp file that is then hard-linked to ``path``: the link fails when
    ``path`` exists, and a reader never sees the file empty or half written. Where the
    filesystem has no hard links (some SMB and FUSE mounts), the file is created with
    O_EXCL and written in place instead.
    """
    tmp = path.parent / temp_name()
    try:
        try:
            _write_new(tmp, data, durable)
        except FileNotFoundError:
            _make_parents(path)
            _write_new(tmp, data, durable)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links here
            if not _create_in_place(path, data, durable):
                return False
    except OSError as exc:
        raise _storage_error("create", path, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        fsync_dir(path.parent)
    return True


def _make_parents(path: Path) -> None:
    """Create ``path``'s folder. Called only when a write found it missing: the folders almost
    always exist, and a mkdir that fails with EEXIST before every write was a system call
    (and a directory lookup under the journal's lock) for nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)


def _write_new(path: Path, data: bytes, durable: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def _create_in_place(path: Path, data: bytes, durable: bool) -> bool:
    try:
        _write_new(path, data, durable)
    except FileExistsError:
        return False
    return True


def move(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` (same filesystem), creating the target folder."""
    try:
        try:
            os.rename(src, dst)
        except FileNotFoundError:  # the target folder is missing (or the source: raised again)
            _make_parents(dst)
            os.rename(src, dst)
        fsync_dir(dst.parent)
    except OSError as exc:
        raise _storage_error("move", src, exc) from exc
