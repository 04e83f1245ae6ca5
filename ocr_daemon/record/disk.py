"""The on-disk record of a claimed document: manifest (who and what) and plan (how)."""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ocr_daemon import atomic

MANIFEST_SCHEMA = "ocr-daemon/manifest/v1"
PLAN_SCHEMA = "ocr-daemon/plan/v1"


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
    schema: str = MANIFEST_SCHEMA

    @property
    def rel_path(self) -> str:
        return f"{self.rel_dir}/{self.name}" if self.rel_dir else self.name

    def save(self, path: Path, create_parents: bool = True, sync_dir: bool = True) -> None:
        atomic.write_json(path, asdict(self), create_parents=create_parents, sync_dir=sync_dir)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = atomic.read_json(path)
        data.pop("schema", None)
        return cls(**data)


@dataclass
class ChunkSpec:
    index: int
    first_page: int  # 1-based page numbers of the original document
    last_page: int
    file: str | None  # chunk file name under chunks/, None when the source is read directly

    @property
    def pages(self) -> list[int]:
        return list(range(self.first_page, self.last_page + 1))


@dataclass
class Plan:
    mime: str
    pages: int
    chunked: bool
    chunks: list[ChunkSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    started_at: str = ""
    decrypted: bool = False  # opened with a password from the watch's passwords_file
    schema: str = PLAN_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        # Not fsynced: a plan lost or torn in a crash is made again from the original
        # (splitting keeps chunk files already written).
        atomic.write_json(path, self.to_dict(), create_parents=False, durable=False)

    @classmethod
    def load(cls, path: Path) -> Plan:
        data = atomic.read_json(path)
        data.pop("schema", None)
        data["chunks"] = [ChunkSpec(**c) for c in data["chunks"]]
        return cls(**data)
