"""Queue claimed documents; find claims on disk that were never queued and queue them."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocr_daemon import log
from ocr_daemon.clock import iso
from ocr_daemon.delivery.names import PROCESS_DOCUMENT
from ocr_daemon.errors import ServiceUnavailable
from ocr_daemon.intake.claim import complete_claim
from ocr_daemon.pipeline.finish import skip_duplicate
from ocr_daemon.record.disk import DispatchNote, Manifest
from ocr_daemon.record.doc import Doc
from ocr_daemon.record.layout import TRASH_PREFIX, WatchPaths, release_stem
from ocr_daemon.record.state import QUEUED
from ocr_daemon.runtime import Runtime
from ocr_daemon.service import metrics

if TYPE_CHECKING:
    from celery import Celery

# A record younger than this may belong to a claim happening right now (maybe on another host).
CLAIM_GRACE_SECONDS = 60.0
# A claim not queued after this long is queued by the sweep (Redis was down, or a crash).
QUEUE_GRACE_SECONDS = 10.0

Send = Callable[[str, str, str], None]  # (watch, doc_id, task_id)


def celery_sender(app: Celery) -> Send:
    """Sends `process_document` by name through ``app`` (configured by the caller); a broker
    that cannot be reached becomes ServiceUnavailable."""

    def send(watch: str, doc_id: str, task_id: str) -> None:
        try:
            app.send_task(
                PROCESS_DOCUMENT, (watch, doc_id),
                task_id=task_id,
                ignore_result=True,  # no result subscription per document sent
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
            )
        except Exception as exc:  # boundary to kombu/redis: any failure to publish
            raise ServiceUnavailable(f"cannot queue {doc_id}: {type(exc).__name__}: {exc}"
                                     ) from exc

    return send


class Dispatcher:
    def __init__(self, rt: Runtime, send: Send) -> None:
        self.rt = rt
        self.store = rt.store
        self.progress = rt.progress
        self.send = send
        self.clock = rt.clock

    def _duplicate_of(self, paths: WatchPaths, manifest: Manifest) -> dict[str, Any] | None:
        """With `duplicates: skip`, the earlier document holding this sha256, if any."""
        watch = self.rt.cfg.watch(paths.name)
        if watch.duplicates != "skip" or not manifest.sha256:
            return None
        result = paths.outputs(manifest.rel_dir, manifest.stem or "", manifest.name).result
        record = {"doc_id": manifest.doc_id, "source": manifest.rel_path,
                  "result": str(result.relative_to(paths.root))}
        return self.store.claim_sha(paths.name, manifest.sha256, record,
                                    watch.duplicates_window)

    def queue(self, paths: WatchPaths, manifest: Manifest, seen_at: float | None = None) -> bool:
        """Mark queued, send the task, record it on disk. False when Redis is unreachable.

        ``seen_at``: when the watcher first saw the file as it was claimed (pickup latency)."""
        dp = paths.doc(manifest.doc_id)
        logger = log.get(doc_id=manifest.doc_id, watch=paths.name)
        previous = DispatchNote.load(dp.dispatch)
        try:
            earlier = self._duplicate_of(paths, manifest)
            if earlier is not None:
                doc = Doc(self.rt.cfg.watch(paths.name), paths, dp, manifest)
                skip_duplicate(self.rt, doc, earlier)
                logger.info("document_duplicate_skipped", duplicate_of=earlier["doc_id"])
                return True
            task_id = str(uuid.uuid4())  # known before the send: one state write, never after
            self.store.set_doc(manifest.doc_id, state=QUEUED, watch=paths.name,
                               name=manifest.name, stem=manifest.stem, task_id=task_id,
                               created_at=manifest.claimed_at)
            # Written before the send (a fast worker may end the document and remove its
            # record right after it), taken back if the send fails. Not fsynced: a record
            # lost in a crash only means the sweep sends it again.
            DispatchNote(task_id, iso(self.clock.time()),
                         previous.attempts + 1 if previous else 1).save(dp.dispatch)
            try:
                self.send(paths.name, manifest.doc_id, task_id)
            except ServiceUnavailable:
                dp.dispatch.unlink(missing_ok=True)
                raise
        except ServiceUnavailable as exc:
            logger.warning("queue_postponed", reason=exc.message)
            return False
        logger.info("document_queued", name=manifest.name, task_id=task_id)
        metrics.pickup(self.store, paths.name, seen_at, self.clock.time())
        return True

    def sweep(self, paths: WatchPaths) -> int:
        """Queue every claim in processing/ that was never queued; tidy abandoned claims."""
        queued = 0
        for trash in paths.processing.glob(f"{TRASH_PREFIX}*"):  # a deletion cut short
            shutil.rmtree(trash, ignore_errors=True)
        for entry in paths.doc_dirs():
            dp = paths.doc(entry.name)
            if not dp.manifest.exists() and not dp.source.exists():
                _drop_abandoned(paths, entry, self.clock.time())  # a deletion killed midway
                continue
            if dp.dispatch.exists() or dp.outcome.exists():
                continue
            if not dp.source.exists():
                _drop_abandoned(paths, entry, self.clock.time())
                continue
            if _age(dp.manifest, self.clock.time()) < QUEUE_GRACE_SECONDS:
                continue
            try:
                manifest = Manifest.load(dp.manifest)
            except (FileNotFoundError, ValueError, TypeError):
                continue  # a claim in progress, or damaged: left for a person (logged by status)
            complete_claim(paths, dp.doc_id, manifest, self.clock,
                           self.rt.cfg.watch(paths.name).max_file_bytes)
            queued += self.queue(paths, manifest)
        return queued


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0


def _drop_abandoned(paths: WatchPaths, entry: Path, now: float) -> None:
    """A record without its original: a claim that lost the rename or crashed before it.
    Its record goes, and the output stem it had reserved is given back."""
    if _age(entry, now) <= CLAIM_GRACE_SECONDS:
        return
    with contextlib.suppress(OSError, ValueError, TypeError):
        manifest = Manifest.load(paths.doc(entry.name).manifest)
        if manifest.stem:
            release_stem(paths.outputs(manifest.rel_dir, manifest.stem, manifest.name),
                         manifest.doc_id)
    shutil.rmtree(entry, ignore_errors=True)
