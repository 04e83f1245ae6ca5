"""Cancel and reprocess a document by id, through the commands' own code (cancel, retry)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from ocr_daemon import atomic, log
from ocr_daemon.api.documents import Located, locate, view
from ocr_daemon.api.uploads import Accepted
from ocr_daemon.commands.cancel import cancel
from ocr_daemon.commands.retry import withdraw
from ocr_daemon.commands.submit import publish_in
from ocr_daemon.errors import Conflict, NotFound, StorageError
from ocr_daemon.intake.claim import claim
from ocr_daemon.intake.dispatch import Dispatcher
from ocr_daemon.record.layout import free_name
from ocr_daemon.record.state import COMPLETED
from ocr_daemon.runtime import Runtime


def cancel_document(rt: Runtime, doc_id: str) -> str:
    """End a queued or running document as cancelled; Conflict once it has ended."""
    found = locate(rt.cfg, rt.store, doc_id)
    if found.manifest is None:
        raise Conflict(f"document {doc_id} has already ended ({view(found)['state']})",
                       hint="Only a queued or processing document can be cancelled.")
    try:
        _, state = cancel(rt, doc_id)
    except NotFound:  # it ended between the look and the cancel
        raise Conflict(f"document {doc_id} has already ended") from None
    return state


def _archived(found: Located) -> Path:
    """The archived original of a completed document (its name, or its suffixed name)."""
    assert found.out is not None
    try:
        result = atomic.read_json(found.out.result)
    except (OSError, ValueError):
        raise Conflict(f"document {found.doc_id} has no result to reprocess") from None
    source = result.get("source", {})
    name = str(source.get("name", ""))
    folder = found.out.archive
    candidates = [folder / name, free_name(folder, name, found.doc_id)] if name else []
    for path in candidates:
        if path.is_file() and _sha256(path) == source.get("sha256"):
            return path
    raise Conflict(f"the original of {found.doc_id} is not kept in archive/",
                   hint="With on_success: delete the original is not kept: upload it again.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def reprocess(rt: Runtime, dispatcher: Dispatcher, doc_id: str,
              engine: str | None) -> Accepted:
    """Run an ended document again as a new document (a new id), optionally with another
    engine: a failed or cancelled one takes its original back from failed/ (as `ocr-daemon
    retry`), a completed one a copy of its archived original."""
    found = locate(rt.cfg, rt.store, doc_id)
    ended = found.ended_file()
    if found.manifest is not None or ended is None or found.out is None:
        raise Conflict(f"document {doc_id} is still in flight",
                       hint="Cancel it first, or wait until it ends.")
    paths = found.paths
    if ended == found.out.result:
        original = _archived(found)
        folder = paths.inbox / found.out.outbox.relative_to(paths.outbox)
        hidden = folder / atomic.temp_name()
        name = original.name if original.name == view(found)["name"] else str(
            atomic.read_json(found.out.result)["source"]["name"])
        try:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(original, hidden)
            with open(hidden, "rb") as fh:
                os.fsync(fh.fileno())
        except OSError as exc:
            hidden.unlink(missing_ok=True)
            raise StorageError(f"cannot copy {original}: {exc.strerror}") from exc
        copied = True
    else:
        hidden, name = withdraw(found.watch, ended)
        copied = False
    try:
        manifest = claim(paths, hidden, rt.clock, found.watch.max_file_bytes, name=name,
                         engine=engine)
    except BaseException:
        if copied:
            hidden.unlink(missing_ok=True)
        elif hidden.exists():  # the only original: into the inbox, never lost
            publish_in(hidden, hidden.parent, name)
        raise
    if manifest is None:
        raise StorageError(f"the original of {doc_id} vanished before it was claimed")
    log.get(doc_id=manifest.doc_id, watch=paths.name).info(
        "document_reprocessed", previous=doc_id, engine=engine,
        previous_state=COMPLETED if ended == found.out.result else "failed")
    return Accepted.of(manifest, dispatcher.queue(paths, manifest))
