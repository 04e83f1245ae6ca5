"""systemd's notify protocol (READY=1, WATCHDOG=1, STOPPING=1) over $NOTIFY_SOCKET.

Ten lines of socket code rather than a dependency: the protocol is one datagram, and the
python-systemd bindings need libsystemd headers to build.
"""

from __future__ import annotations

import os
import socket
import time


def notify(*states: str) -> bool:
    """Send ``states`` to the service manager; False when not run under one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
    except OSError:
        return False
    return True


class Watchdog:
    """Pings WATCHDOG=1 at half the interval systemd asked for ($WATCHDOG_USEC)."""

    def __init__(self) -> None:
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.interval = int(usec) / 2e6 if usec.isdigit() and mine else None
        self.next = 0.0

    def ping(self) -> None:
        if self.interval is None:
            return
        now = time.monotonic()
        if now >= self.next:
            notify("WATCHDOG=1")
            self.next = now + self.interval
