"""Claim a settled inbox file: manifest first, then an atomic rename into processing/<doc_id>/.

Only one claimer's rename can succeed, so several watchers on one shared inbox never take a
file twice. The manifest is written before the rename so that a crash never leaves an
original in processing/ without the record of where it came from.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
from pathlib import Path

from ocr_daemon import atomic
from ocr_daemon.clock import Clock, iso
from ocr_daemon.errors import StorageError
from ocr_daemon.record.disk import Manifest, new_doc_id
from ocr_daemon.record.layout import Outputs, WatchPaths, reserve_stem, stem_candidates
from ocr_daemon.record.progress import snapshot


def sha256_of(path: Path, limit: int) -> tuple[int, str | None]:
    """Size and sha256 of a regular file (never through a link); no hash above ``limit``
    bytes: such a file fails as too large and is not worth reading."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        size = st.st_size
        if size > limit:
            return size, None
        digest = hashlib.sha256()
        while block := fh.read(1 << 20):
            digest.update(block)
    return size, digest.hexdigest()


def claim(paths: WatchPaths, src: Path, clock: Clock, max_bytes: int, *,
          name: str | None = None, original_name: str | None = None,
          engine: str | None = None) -> Manifest | None:
    """Move ``src`` into a new document record; None when another claimer took it first
    (or it stopped being a regular file between the look and the rename).

    ``name`` (an upload's hidden file: its sanitised client name), ``original_name`` and
    ``engine`` (an override of the watch's) go into the manifest.

    The settled file is hashed first, so the durable manifest written before the rename holds
    everything; its output stem is the plain one, which only the winner of the rename
    reserves (complete_claim), rewriting the manifest only when another document holds it.
    """
    now = clock.time()
    doc_id = new_doc_id(now)
    dp = paths.doc(doc_id)
    manifest = Manifest(
        doc_id=doc_id, watch=paths.name, name=name or src.name, rel_dir=paths.rel_dir_of(src),
        claimed_at=iso(now), claimed_by=f"{socket.gethostname()}:{os.getpid()}",
        original_name=original_name, engine=engine,
    )
    # Tentative until reserved: nothing reads a stem before complete_claim (the sweep calls it
    # too), so the common case, a free plain stem, writes and fsyncs the manifest only once.
    manifest.stem = stem_candidates(manifest.name, doc_id)[0]
    try:
        manifest.size, manifest.sha256 = sha256_of(src, max_bytes)
    except OSError:
        return None  # taken by another watcher, or a link or FIFO slipped in: left alone
    try:
        dp.dir.mkdir(parents=True)
        # The manifest's data is fsynced before the rename; its folder entry is made durable
        # with the rename's by the one fsync of the record's folder below (journaling
        # filesystems commit the two renames in order).
        manifest.save(dp.manifest, create_parents=False, sync_dir=False)
        os.rename(src, dp.source)
    except FileNotFoundError:
        shutil.rmtree(dp.dir, ignore_errors=True)
        return None  # another watcher won the rename
    except (OSError, StorageError) as exc:
        shutil.rmtree(dp.dir, ignore_errors=True)
        raise StorageError(f"cannot claim {src}: {exc}") from exc
    if not stat.S_ISREG(os.lstat(dp.source).st_mode):  # swapped for a link or FIFO: give back
        if not os.path.lexists(src):
            os.rename(dp.source, src)
            shutil.rmtree(dp.dir, ignore_errors=True)
        return None
    # One fsync: the record's folder holds both renames (manifest, original). The inbox is not
    # fsynced: a rename is one journaled change, durable on both sides once the folder it
    # went into is (atomic.move relies on the same).
    atomic.fsync_dir(dp.dir)
    complete_claim(paths, doc_id, manifest, clock, max_bytes)
    return manifest


def complete_claim(paths: WatchPaths, doc_id: str, manifest: Manifest, clock: Clock,
                   max_bytes: int) -> Outputs:
    """Hash the original and reserve its output stem (again after a crash: idempotent)."""
    dp = paths.doc(doc_id)
    if manifest.size is None:
        manifest.size, manifest.sha256 = sha256_of(dp.source, max_bytes)
    first = atomic.dumps(snapshot(manifest, None, None, clock.time()))
    out = reserve_stem(paths, manifest.rel_dir, manifest.name, doc_id, first)
    if manifest.stem != out.stem:
        manifest.stem = out.stem
        # Without a folder fsync: if a crash loses this write, the stem is worked out again.
        manifest.save(dp.manifest, create_parents=False, sync_dir=False)
    return out
