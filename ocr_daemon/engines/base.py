"""The engine interface: extract the text of some pages of one file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Page:
    number: int  # 1-based page number in the original document
    index: int  # 0-based page (or frame) index in ``PageRequest.path``


@dataclass(frozen=True)
class PageRequest:
    path: Path  # a chunk file, the source PDF, or an image
    mime: str
    pages: tuple[Page, ...]


@dataclass
class PageText:
    number: int
    text: str
    engine: str


@dataclass
class Extraction:
    pages: list[PageText]
    warnings: list[str] = field(default_factory=list)


class Engine(Protocol):
    name: str

    def extract(self, request: PageRequest) -> Extraction:
        """Text for every requested page, in request order; raise our errors only."""
        ...


def has_text(text: str, min_chars: int) -> bool:
    """True when a page's text layer holds at least ``min_chars`` visible characters."""
    return sum(1 for ch in text if not ch.isspace()) >= min_chars
