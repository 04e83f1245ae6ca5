"""Where things live: the five folders of a watch, a document's record, and its output names."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ocr_daemon import atomic
from ocr_daemon.config import Config, WatchConfig
from ocr_daemon.errors import ConfigError

FOLDERS = ("inbox", "processing", "outbox", "failed", "archive")
TRASH_PREFIX = ".ocrd-removed-"  # a record being deleted (hidden: not a document)
NAME_MAX = 255
LONGEST_SUFFIX = ".progress.json"


def create_folders(cfg: Config) -> list[Path]:
    """Create state_dir and the five folders of every watch; return those it created.

    The explicit step of `run`, `watch`, `worker` and `config check --create` (loading a
    configuration creates nothing). Errors name the key path and the reason."""
    created: list[Path] = []
    try:
        if not cfg.state_dir.is_dir():
            cfg.state_dir.mkdir(parents=True, exist_ok=True)
            created.append(cfg.state_dir)
    except OSError as exc:
        raise ConfigError([f"state_dir: cannot be created ({exc.strerror})"]) from None
    for i, watch in enumerate(cfg.watches):
        paths = WatchPaths.of(watch)
        missing = [f for f in paths.folders if not f.is_dir()]
        try:
            paths.ensure()
        except OSError as exc:
            raise ConfigError([f"watches[{i}].root: {exc.filename} cannot be created "
                               f"({exc.strerror})"]) from None
        created += missing
    return created


@dataclass(frozen=True)
class WatchPaths:
    name: str
    root: Path
    inbox: Path
    processing: Path
    outbox: Path
    failed: Path
    archive: Path

    @classmethod
    def of(cls, watch: WatchConfig) -> WatchPaths:
        root = watch.root
        return cls(watch.name, root, *(root / f for f in FOLDERS))

    def ensure(self) -> None:
        """Create the five folders; refuse links and folders on another filesystem (a claim is
        an atomic rename, which only works within one filesystem)."""
        devices = set()
        for folder in self.folders:
            folder.mkdir(parents=True, exist_ok=True)
            st = os.lstat(folder)
            if not stat.S_ISDIR(st.st_mode):
                raise ConfigError([f"watch {self.name}: {folder} must be a folder, not a link"])
            devices.add(st.st_dev)
        if len(devices) > 1:
            raise ConfigError([f"watch {self.name}: inbox, processing, outbox, failed and "
                               f"archive under {self.root} must be on one filesystem"])

    @property
    def folders(self) -> tuple[Path, ...]:
        """The five folders, in the order of FOLDERS."""
        return tuple(getattr(self, name) for name in FOLDERS)

    def doc(self, doc_id: str) -> DocPaths:
        return DocPaths(self.processing / doc_id)

    def doc_dirs(self) -> list[Path]:
        """The document records in processing/, oldest id first (symlinks never followed)."""
        try:
            return sorted(p for p in self.processing.iterdir()
                          if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))
        except OSError:
            return []

    def rel_dir_of(self, path: Path) -> str:
        """The folder of an inbox file relative to the inbox, '/'-separated ('' at the top)."""
        rel = path.parent.relative_to(self.inbox)
        return "" if rel == Path(".") else PurePosixPath(*rel.parts).as_posix()

    def outputs(self, rel_dir: str, stem: str, name: str) -> Outputs:
        return Outputs(
            outbox=self.outbox / rel_dir,
            failed=self.failed / rel_dir,
            archive=self.archive / rel_dir,
            stem=stem,
            name=name,
        )


@dataclass(frozen=True)
class DocPaths:
    """``processing/<doc_id>/``: the durable record of one document in flight."""

    dir: Path

    @property
    def doc_id(self) -> str:
        return self.dir.name

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def source(self) -> Path:
        return self.dir / "source"

    @property
    def plan(self) -> Path:
        return self.dir / "plan.json"

    @property
    def dispatch(self) -> Path:
        return self.dir / "dispatch.json"

    @property
    def outcome(self) -> Path:
        return self.dir / "outcome.json"

    @property
    def decrypted(self) -> Path:
        """The source without its encryption, written by the plan when a password opened it."""
        return self.dir / "decrypted.pdf"

    @property
    def chunks(self) -> Path:
        """Chunk files of plans made before chunks were page ranges (read while upgrading)."""
        return self.dir / "chunks"

    @property
    def results(self) -> Path:
        return self.dir / "results"

    def chunk_file(self, index: int) -> Path:
        return self.chunks / f"{index:05d}.pdf"

    def chunk_result(self, index: int) -> Path:
        return self.results / f"{index:05d}.json"

    def chunk_error(self, index: int) -> Path:
        return self.results / f"{index:05d}.error.json"

    @property
    def layers(self) -> Path:
        return self.dir / "layers"

    def layer(self, number: int) -> Path:
        """Page ``number``'s text-only PDF page, for the searchable PDF (outputs: pdf)."""
        return self.layers / f"{number:06d}.pdf"


@dataclass(frozen=True)
class Outputs:
    """The output names of one document (stem already made unique)."""

    outbox: Path
    failed: Path
    archive: Path
    stem: str
    name: str

    @property
    def text(self) -> Path:
        return self.outbox / f"{self.stem}.txt"

    @property
    def result(self) -> Path:
        return self.outbox / f"{self.stem}.json"

    @property
    def progress(self) -> Path:
        return self.outbox / f"{self.stem}.progress.json"

    def pdf(self, suffix: str = ".pdf") -> Path:
        """The searchable PDF (a watch's pdf_suffix, ".pdf" by default)."""
        return self.outbox / f"{self.stem}{suffix}"

    @property
    def error(self) -> Path:
        return self.failed / f"{self.stem}.error.json"

    @property
    def failed_progress(self) -> Path:
        return self.failed / f"{self.stem}.progress.json"

    @property
    def partial_text(self) -> Path:
        return self.failed / f"{self.stem}.partial.txt"

    @property
    def original_name(self) -> str:
        """The original's name where it lands (failed/ or archive/): the stem keeps it unique."""
        return self.stem + split_name(self.name)[1]

    def taken(self) -> bool:
        """True when any file of this stem exists (another document owns it)."""
        return any(
            p.exists() or p.is_symlink()
            for p in (self.text, self.result, self.progress, self.pdf(), self.error,
                      self.failed_progress, self.failed / self.original_name)
        )


def split_name(name: str) -> tuple[str, str]:
    """('report', '.pdf') for 'report.pdf'; no extension for dot-files or extension-less names."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return name, ""
    return stem, "." + ext


def fit(stem: str, room: int) -> str:
    """Cut ``stem`` (on a character boundary) so that its UTF-8 form is at most ``room`` bytes."""
    data = os.fsencode(stem)
    if len(data) <= room:
        return stem
    return data[:room].decode("utf-8", errors="ignore")


def stem_candidates(name: str, doc_id: str) -> list[str]:
    stem, ext = split_name(name)
    suffix = "-" + doc_id[-8:]
    room = NAME_MAX - max(len(LONGEST_SUFFIX), len(os.fsencode(ext)))
    return [fit(stem, room), fit(stem, room - len(suffix)) + suffix]


def reserve_stem(paths: WatchPaths, rel_dir: str, name: str, doc_id: str,
                 first_progress: bytes) -> Outputs:
    """Claim an output stem for ``doc_id`` by creating its progress file exclusively.

    The plain stem when free, else the stem with a suffix from the document id: results of
    one document never overwrite another's. Calling it again for the same document returns
    the stem it already holds.
    """
    for stem in stem_candidates(name, doc_id):
        out = paths.outputs(rel_dir, stem, name)
        if _held_by(out.progress, doc_id):
            return out
        if not out.taken() and atomic.create_exclusive(out.progress, first_progress,
                                                       durable=False):
            return out
    # The suffixed stem is unique to this document; only a leftover of ours can hold it.
    out = paths.outputs(rel_dir, stem_candidates(name, doc_id)[1], name)
    atomic.write_bytes(out.progress, first_progress, durable=False)
    return out


def release_stem(out: Outputs, doc_id: str) -> None:
    """Give a reserved stem back (a claim that lost the race), if this document holds it."""
    if _held_by(out.progress, doc_id):
        out.progress.unlink(missing_ok=True)


def _held_by(progress: Path, doc_id: str) -> bool:
    try:
        return bool(atomic.read_json(progress).get("doc_id") == doc_id)
    except (OSError, ValueError, AttributeError):
        return False


def free_name(folder: Path, name: str, doc_id: str) -> Path:
    """``folder/name`` if free, else the name with the document's suffix: never overwrite."""
    target = folder / name
    if not (target.exists() or target.is_symlink()):
        return target
    stem, ext = split_name(name)
    suffix = "-" + doc_id[-8:]
    return folder / (fit(stem, NAME_MAX - len(os.fsencode(ext)) - len(suffix)) + suffix + ext)
