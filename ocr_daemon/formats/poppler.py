"""Poppler's `pdftotext` program as a text-layer extractor (with poppler-data it reads CJK)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ocr_daemon.errors import TransientEngineError

PROGRAM = "pdftotext"
TIMEOUT = 120.0
# Debian's poppler-data: CID-to-Unicode tables for the Adobe CJK collections.
CID_TABLES = Path("/usr/share/poppler/cidToUnicode")


def available() -> bool:
    """True when the pdftotext program is on PATH."""
    return shutil.which(PROGRAM) is not None


def reads_cjk() -> bool:
    """True when poppler can map CJK CID fonts that lack a ToUnicode map."""
    return CID_TABLES.is_dir() and any(CID_TABLES.iterdir())


def page_texts(path: Path, indices: list[int]) -> list[str | None]:
    """pdftotext's text of the given 0-based pages; None for every page when it fails."""
    if not indices:
        return []
    first, last = min(indices) + 1, max(indices) + 1
    try:
        done = subprocess.run([PROGRAM, "-q", "-enc", "UTF-8", "-f", str(first), "-l", str(last),
                               str(path), "-"], capture_output=True, timeout=TIMEOUT, check=False)
    except FileNotFoundError:
        return [None] * len(indices)
    except subprocess.TimeoutExpired:
        raise TransientEngineError(f"pdftotext took longer than {TIMEOUT:g}s") from None
    except OSError:
        return [None] * len(indices)
    if done.returncode != 0:
        return [None] * len(indices)
    pages = done.stdout.decode("utf-8", errors="replace").split("\f")
    return [pages[i + 1 - first] if i + 1 - first < len(pages) else None for i in indices]
