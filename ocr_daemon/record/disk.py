"""The on-disk record of a claimed document: manifest, plan, dispatch note, chunks, outcome."""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ocr_daemon import atomic

MANIFEST_SCHEMA = "ocr-daemon/manifest/v1"
PLAN_SCHEMA = "ocr-daemon/plan/v1"
CHUNK_RESULT_SCHEMA = "ocr-daemon/chunk-result/v1"


def new_doc_id(now: float | None = None) -> str:
    """Sortable and unique: UTC time of the claim plus 8 random hex digits."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"{stamp}-{secrets.token_hex(4)}"


@dataclass
class Manifest:
    doc_id: str
    watch: str
    name: str
    rel_dir: str
    claimed_at: str
    claimed_by: str
    size: int | None = None
    sha256: str | None = None
    stem: str | None = None
    # Set for uploads through the API: the client's file name (``name`` is it sanitised)
    # and an engine chosen for this document instead of the watch's.
    original_name: str | None = None
    engine: str | None = None
    schema: str = MANIFEST_SCHEMA

    @property
    def rel_path(self) -> str:
        return f"{self.rel_dir}/{self.name}" if self.rel_dir else self.name

    def save(self, path: Path, create_parents: bool = True, sync_dir: bool = True) -> None:
        atomic.write_json(path, asdict(self), create_parents=create_parents, sync_dir=sync_dir,
                          compact=True)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = atomic.read_json(path)
        data.pop("schema", None)
        return cls(**data)


@dataclass
class ChunkSpec:
    """Pages of the original a chunk reads: first_page..last_page, or exactly ``page_list``
    (`auto`'s OCR pages and the text pages around them need not be contiguous)."""

    index: int
    first_page: int  # 1-based page numbers of the original document
    last_page: int
    file: str | None = None  # a chunk file under chunks/: plans of earlier versions only
    page_list: list[int] | None = None

    @property
    def pages(self) -> list[int]:
        if self.page_list is not None:
            return list(self.page_list)
        return list(range(self.first_page, self.last_page + 1))

    @classmethod
    def of(cls, index: int, pages: list[int]) -> ChunkSpec:
        """The chunk of these (ascending) pages: a range when they are contiguous."""
        contiguous = pages == list(range(pages[0], pages[-1] + 1))
        return cls(index, pages[0], pages[-1], None, None if contiguous else list(pages))


@dataclass
class Plan:
    mime: str
    pages: int
    chunked: bool  # its chunks fan out as chunk tasks; else the document task reads them
    chunks: list[ChunkSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    started_at: str = ""
    decrypted: bool = False  # opened with a password from the watch's passwords_file
    schema: str = PLAN_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        # Not fsynced: a plan lost or torn in a crash is made again from the original
        # (`auto`'s text pass writes the same result files again).
        atomic.write_json(path, self.to_dict(), create_parents=False, durable=False,
                          compact=True)

    @classmethod
    def load(cls, path: Path) -> Plan:
        data = atomic.read_json(path)
        data.pop("schema", None)
        data["chunks"] = [ChunkSpec(**c) for c in data["chunks"]]
        return cls(**data)


@dataclass
class DispatchNote:
    """``dispatch.json``: the document was sent to the queue (task id, when, how many times).

    The dispatcher writes the first one before its send; the reaper rewrites it before each
    re-send. Its ``attempts`` count is what caps the reaper's re-queues."""

    task_id: str
    queued_at: str
    attempts: int = 1

    def save(self, path: Path, durable: bool = False) -> None:
        # Never creates the record's folder: an ending may have removed it meanwhile.
        atomic.write_json(path, asdict(self), create_parents=False, durable=durable,
                          compact=True)

    @classmethod
    def load(cls, path: Path) -> DispatchNote | None:
        """The note, or None when there is none or it is torn (a crash while not fsynced)."""
        try:
            data = atomic.read_json(path)
            return cls(task_id=str(data["task_id"]), queued_at=str(data.get("queued_at", "")),
                       attempts=int(data.get("attempts", 1)))
        except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass
class Outcome:
    """``outcome.json``: a document's ending, decided and recorded before it is carried out."""

    state: str  # completed | failed | cancelled
    original_to: str | None  # where the original goes, relative to the watch root
    decided_at: str
    error: dict[str, Any] | None = None  # failed or cancelled: why
    chunk_errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    duplicate_of: dict[str, Any] | None = None  # `duplicates: skip`: the earlier document
    # A one-pass document's chunk results (ChunkResult.to_dict), recorded with its ending:
    # its results/ files are not fsynced, this durable record is what the ending reads.
    results: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: v for k, v in data.items()
                if not (v is None and k in ("error", "duplicate_of", "results"))}

    def save(self, path: Path) -> None:
        atomic.write_json(path, self.to_dict(), compact=True)

    @classmethod
    def load(cls, path: Path) -> Outcome | None:
        """The decided ending, or None when none was decided yet."""
        try:
            data = atomic.read_json(path)
        except FileNotFoundError:
            return None
        return cls(state=data["state"], original_to=data.get("original_to"),
                   decided_at=data.get("decided_at", ""), error=data.get("error"),
                   chunk_errors=list(data.get("chunk_errors") or []),
                   warnings=list(data.get("warnings") or []),
                   duplicate_of=data.get("duplicate_of"), results=data.get("results"))


@dataclass
class ChunkResult:
    """``results/<index>.json``: the text of one chunk's pages (page records as dicts)."""

    index: int
    pages: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    usage: dict[str, Any] | None = None  # what a remote engine billed for it (gemini: tokens)
    schema: str = CHUNK_RESULT_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        data = {"schema": self.schema, "index": self.index, "pages": self.pages,
                "warnings": self.warnings}
        if self.usage is not None:  # only what a remote engine billed
            data["usage"] = self.usage
        return data

    def save(self, path: Path, durable: bool = True) -> None:
        """``durable=False`` for a one-pass document's result: until its ending is decided a
        lost or torn one is extracted again, and the decided ending carries it (Outcome)."""
        atomic.write_json(path, self.to_dict(), create_parents=False, durable=durable,
                          compact=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChunkResult:
        return cls(index=int(data["index"]), pages=list(data["pages"]),
                   warnings=list(data.get("warnings") or []), usage=data.get("usage"))

    @classmethod
    def load(cls, path: Path) -> ChunkResult:
        return cls.from_dict(atomic.read_json(path))

    @classmethod
    def whole(cls, path: Path) -> bool:
        """The result file exists and reads (not torn by a power cut: see save)."""
        try:
            cls.load(path)
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return True


@dataclass
class ChunkError:
    """``results/<index>.error.json``: a chunk failed for good, and why."""

    index: int
    error: dict[str, Any]

    def save(self, path: Path) -> None:
        atomic.write_json(path, asdict(self), create_parents=False, compact=True)

    @classmethod
    def load(cls, path: Path) -> ChunkError:
        data = atomic.read_json(path)
        return cls(index=int(data["index"]), error=dict(data["error"]))
