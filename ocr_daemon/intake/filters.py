"""Which inbox entries are documents: accepted patterns, ignore rules, regular files only."""

from __future__ import annotations

import fnmatch
import os
import stat
import unicodedata
from pathlib import Path

from ocr_daemon.config import WatchConfig

# Upload temp names and system files (matched case-insensitively against the file name).
DEFAULT_IGNORED_FILES = (
    ".*",  # hidden: rsync's .name.XXXXXX, macOS ._name and .DS_Store, our own temp files
    "*.part", "*.partial", "*.filepart", "*.crdownload", "*.tmp", "~$*",
    ".syncthing.*.tmp", ".pureftpd-upload.*", ".sftpgo-upload.*",
    "thumbs.db", "desktop.ini",
)
DEFAULT_IGNORED_DIRS = (
    ".*",  # hidden folders, rsync's .~tmp~
    "@eadir", ".trashes", "__macosx", ".stfolder", ".stversions",
)


class Rules:
    """The intake rules of one watch."""

    def __init__(self, watch: WatchConfig) -> None:
        self.patterns = [p.lower() for p in watch.patterns]
        extra = [p.lower() for p in watch.ignore]
        self.ignored_files = [*DEFAULT_IGNORED_FILES, *extra]
        self.ignored_dirs = [*DEFAULT_IGNORED_DIRS, *extra]

    @staticmethod
    def _match(name: str, patterns: list[str]) -> bool:
        low = unicodedata.normalize("NFC", name).lower()
        return any(fnmatch.fnmatchcase(low, p) for p in patterns)

    def dir_ignored(self, name: str) -> bool:
        return self._match(name, self.ignored_dirs)

    def ignored(self, name: str) -> bool:
        """Hidden, an upload's temporary name, or listed in the watch's `ignore`."""
        return self._match(name, self.ignored_files)

    def name_accepted(self, name: str) -> bool:
        return not self.ignored(name) and self._match(name, self.patterns)

    def path_accepted(self, inbox: Path, path: Path) -> bool:
        """The name is accepted and no folder between the inbox and the file is ignored."""
        try:
            rel = path.relative_to(inbox)
        except ValueError:
            return False
        return self.name_accepted(path.name) and not any(
            self.dir_ignored(part) for part in rel.parts[:-1]
        )


def regular_file(path: Path) -> os.stat_result | None:
    """lstat of ``path`` when it is a regular file (never a link, FIFO, socket or device)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None
