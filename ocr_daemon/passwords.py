"""Known PDF passwords of a watch: a private file of candidates, one a line, never logged."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ocr_daemon.errors import EncryptedDocument


def check_private(path: Path) -> str | None:
    """Why ``path`` may not serve as a passwords file, or None when it may: it must be a
    regular file this user can read that neither its group nor others can read or write."""
    try:
        st = path.stat()
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_mode & 0o077:
        return (f"readable or writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"`chmod 600 {path}` so that only the service user can read it")
    if not os.access(path, os.R_OK):
        return "not readable by this user"
    return None


def read(path: Path) -> list[str]:
    """The candidate passwords in ``path``: every non-empty line, line end removed (spaces
    inside or around a password are part of it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        # Raised while planning a document: it ends with this error, its original kept.
        raise EncryptedDocument(f"the PDF is encrypted and the watch's passwords_file cannot "
                                f"be read ({type(exc).__name__})") from None
    return [line.rstrip("\r") for line in text.split("\n") if line.rstrip("\r")]
