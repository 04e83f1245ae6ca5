"""Which files some process still holds open for writing (Linux /proc), to not take them early."""

from __future__ import annotations

import os

_WRITE_MODES = (os.O_WRONLY, os.O_RDWR)


def open_for_writing(under: tuple[str, ...]) -> set[str]:
    """Paths below any of the ``under`` folders that a process we can see has open for writing.

    On other systems, or for writers we cannot see (another host on a shared mount), this
    finds nothing, and the size-and-mtime settle check alone decides.
    """
    found: set[str] = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or not ours to see
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
                if not target.startswith(under):
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}", "rb") as fh:
                    info = fh.read(256)
                flags = int(info.split(b"flags:", 1)[1].split()[0], 8)
            except (OSError, IndexError, ValueError):
                continue
            if flags & os.O_ACCMODE in _WRITE_MODES:
                found.add(target)
    return found
