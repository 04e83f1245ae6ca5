"""The watcher: inotify or polling events plus scans feed candidates; settled files are claimed."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper
from watchdog.observers.polling import PollingObserver

from ocr_daemon import log
from ocr_daemon.clock import Clock
from ocr_daemon.config import WatchConfig
from ocr_daemon.errors import DocumentError, OcrDaemonError
from ocr_daemon.formats.complete import whole
from ocr_daemon.formats.sniff import sniff
from ocr_daemon.intake.claim import claim
from ocr_daemon.intake.dispatch import Dispatcher
from ocr_daemon.intake.filters import Rules, regular_file
from ocr_daemon.intake.housekeeping import tidy
from ocr_daemon.intake.openfiles import open_for_writing
from ocr_daemon.intake.reaper import Reaper
from ocr_daemon.intake.settle import Settler
from ocr_daemon.record.layout import WatchPaths

TICK_SECONDS = 0.1
CLAIM_THREADS = 8
MOVE_PAIRING_SECONDS = 0.05
SWEEP_SECONDS = 10.0
TIDY_SECONDS = 600.0


def prompt_move_events() -> None:
    """watchdog holds each IN_MOVED_FROM for 0.5 s to pair it with its IN_MOVED_TO, and every
    later event waits behind it in one queue. Each claim renames a file out of the inbox (a
    MOVED_FROM with no pair), so the events of the files after it came up to 0.5 s late:
    pickup p50 was 1.6 s with settle_seconds 1.0, and 1.05 s with this. The two halves of one
    rename arrive together; 50 ms is plenty to pair them."""
    InotifyMoveEventGrouper.delay = MOVE_PAIRING_SECONDS


class _Events(FileSystemEventHandler):
    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    def on_any_event(self, event: FileSystemEvent) -> None:
        path = os.fsdecode(getattr(event, "dest_path", "") or event.src_path)
        if isinstance(event, DirCreatedEvent | DirMovedEvent):
            self.intake.scan(Path(path))  # a folder moved in: its files sent no events
        elif not event.is_directory and event.event_type != "deleted":
            self.intake.notify(path)


class Intake:
    """One watch's inbox: candidates, settling, claiming."""

    def __init__(self, watch: WatchConfig, dispatcher: Dispatcher, clock: Clock) -> None:
        self.watch = watch
        self.paths = WatchPaths.of(watch)
        self.rules = Rules(watch)
        self.settler = Settler(watch.settle_seconds, watch.settle_checks,
                               watch.poll_interval if watch.polling else 0.0)
        self.dispatcher = dispatcher
        self.clock = clock
        self.log = log.get(watch=watch.name)
        self._lock = threading.Lock()
        self._candidates: set[str] = set()
        self._reported: set[str] = set()
        self._claiming: set[str] = set()  # handed to the claim threads, not done yet
        # path -> (size, mtime, inode) and whether the file was whole by its content then
        self._whole: dict[str, tuple[tuple[int, int, int], bool]] = {}
        self._told: set[str] = set()  # incomplete files already reported as waiting
        # Claims wait on the disk (fsync, file creation), not the CPU: a few in parallel keep
        # a burst of files moving (1,000 files queued in 19 s one at a time here).
        self._claimers = ThreadPoolExecutor(CLAIM_THREADS, thread_name_prefix="claim")
        self.observer: BaseObserver | None = None

    def start(self) -> None:
        self.paths.ensure()
        prompt_move_events()
        self.observer = (PollingObserver(timeout=self.watch.poll_interval) if self.watch.polling
                         else Observer())
        self.observer.schedule(_Events(self), str(self.paths.inbox),
                               recursive=self.watch.recursive)
        self.observer.start()
        self.scan(self.paths.inbox)

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)
        self._claimers.shutdown(wait=True)

    def notify(self, path: str) -> None:
        with self._lock:
            self._candidates.add(path)

    def scan(self, folder: Path) -> None:
        """Add every file under ``folder`` (the startup scan, rescans, folders moved in)."""
        for dirpath, dirnames, filenames in os.walk(folder):
            here = Path(dirpath)
            if not self.watch.recursive:
                for name in dirnames:  # a folder named like a document: looked at, left alone
                    if self.rules.name_accepted(name):
                        self.notify(str(here / name))
                dirnames[:] = []
            dirnames[:] = [d for d in dirnames if not self.rules.dir_ignored(d)]
            for name in filenames:
                self.notify(str(here / name))

    def tick(self, writers: _Writers) -> None:
        with self._lock:
            todo, self._candidates = self._candidates | set(self.settler.pending()), set()
        now = self.clock.monotonic()
        for path in sorted(todo):
            self._consider(path, now, writers)

    def _consider(self, path: str, now: float, writers: _Writers) -> None:
        p = Path(path)
        with self._lock:
            if path in self._claiming:
                return
        if not self.rules.path_accepted(self.paths.inbox, p):
            self._forget(path)
            return
        st = regular_file(p)
        if st is None:
            self._forget(path)
            if os.path.lexists(path) and path not in self._reported:
                self._reported.add(path)  # a link, FIFO, socket, device or folder: left alone
                self.log.warning("not_a_regular_file", path=path)
            return
        if not self.settler.observe(path, st, now):
            if self.settler.unsettled_too_long(path, now):
                self.log.warning("file_keeps_changing", path=path)
            return
        look = self.settler.looks[path]
        incomplete = not self._is_whole(p, look.signature)
        if incomplete and now - look.since < self.watch.incomplete_grace_seconds:
            if path not in self._told:  # said once per unchanged stretch
                self._told.add(path)
                self.log.info("incomplete_waiting", path=path,
                              grace=self.watch.incomplete_grace_seconds)
            return
        if path in writers.found():
            self.settler.restart(path, now)
            return
        if incomplete:  # unchanged for the whole grace: taken, and fails as truncated
            self.log.warning("incomplete_taken", path=path,
                             unchanged_for=round(now - look.since, 1))
        seen_at = self.clock.time() - (now - look.since)  # pickup metric
        self._forget(path)
        with self._lock:
            self._claiming.add(path)
        self._claimers.submit(self._claim, path, seen_at)

    def _forget(self, path: str) -> None:
        self.settler.forget(path)
        self._whole.pop(path, None)
        self._told.discard(path)

    def _is_whole(self, path: Path, signature: tuple[int, int, int]) -> bool:
        """Whole by its content (formats.complete), judged once per size, mtime and inode.
        A type we cannot tell (empty, unsupported) counts as whole: the pipeline fails it."""
        known = self._whole.get(str(path))
        if known is not None and known[0] == signature:
            return known[1]
        self._told.discard(str(path))
        try:
            verdict = whole(path, sniff(path))
        except (DocumentError, OSError):
            verdict = True
        self._whole[str(path)] = (signature, verdict)
        return verdict

    def _claim(self, path: str, seen_at: float) -> None:
        try:
            manifest = claim(self.paths, Path(path), self.clock, self.watch.max_file_bytes)
            if manifest is not None:
                self.dispatcher.queue(self.paths, manifest, seen_at)
        except OcrDaemonError as exc:
            self.log.error("claim_failed", path=path, **exc.to_dict())
        except Exception:  # boundary: a claim thread must not die silently
            self.log.exception("claim_crashed", path=path)
        finally:
            with self._lock:
                self._claiming.discard(path)

    def sweep(self) -> None:
        self.dispatcher.sweep(self.paths)


class _Writers:
    """Files open for writing, read from /proc at most once per tick and only when needed."""

    def __init__(self, roots: tuple[str, ...]) -> None:
        self.roots = roots
        self._found: set[str] | None = None

    def found(self) -> set[str]:
        if self._found is None:
            self._found = open_for_writing(self.roots)
        return self._found


class Watcher:
    """Every watch of the configuration, driven by one loop."""

    def __init__(self, watches: list[WatchConfig], dispatcher: Dispatcher, clock: Clock,
                 reaper: Reaper | None = None, reap_interval: float = 30.0) -> None:
        self.intakes = [Intake(w, dispatcher, clock) for w in watches]
        self.clock = clock
        self.reaper = reaper
        self.reap_interval = reap_interval

    def _guarded(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception:  # boundary: one bad round must not stop the watcher
            log.get().exception("watcher_error", step=what)

    def start(self) -> None:
        """Start observers, scan each inbox, queue claims left from an earlier run."""
        for intake in self.intakes:
            intake.start()
            self._guarded("sweep", intake.sweep)
            if self.reaper is not None:  # work lost while nothing ran: queue it now
                self._guarded("reap", partial(self.reaper.reap, intake.paths, stall=0.0))

    def loop(self, stop: threading.Event, on_tick: Callable[[], object] | None = None) -> None:
        """Settle and claim until ``stop`` is set; rescans and sweeps on their intervals."""
        roots = tuple(str(i.paths.inbox) + os.sep for i in self.intakes)
        next_sweep = self.clock.monotonic() + SWEEP_SECONDS
        next_reap = self.clock.monotonic() + self.reap_interval
        next_tidy = self.clock.monotonic() + TIDY_SECONDS
        next_rescan = {id(i): self.clock.monotonic() + i.watch.rescan_interval
                       for i in self.intakes}
        try:
            while not stop.wait(TICK_SECONDS):
                writers = _Writers(roots)
                now = self.clock.monotonic()
                for intake in self.intakes:
                    if now >= next_rescan[id(intake)]:
                        self._guarded("rescan", partial(intake.scan, intake.paths.inbox))
                        next_rescan[id(intake)] = now + intake.watch.rescan_interval
                    self._guarded("tick", partial(intake.tick, writers))
                if now >= next_sweep:
                    for intake in self.intakes:
                        self._guarded("sweep", intake.sweep)
                    next_sweep = now + SWEEP_SECONDS
                if now >= next_tidy:
                    for intake in self.intakes:
                        self._guarded("housekeeping",
                                     partial(tidy, intake.paths, intake.dispatcher.store))
                    next_tidy = now + TIDY_SECONDS
                if self.reaper is not None and now >= next_reap:
                    for intake in self.intakes:
                        self._guarded("reap", partial(self.reaper.reap, intake.paths))
                    next_reap = now + self.reap_interval
                if on_tick is not None:
                    self._guarded("on_tick", on_tick)
        finally:
            for intake in self.intakes:
                intake.stop()
