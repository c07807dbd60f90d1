"""sd_notify(3) without libsystemd: one datagram to `$NOTIFY_SOCKET` per call.

Sent from the main daemon process only (systemd may drop messages from helper processes).
Failures are ignored, as the man page recommends.
"""

from __future__ import annotations

import contextlib
import os
import socket


class Notifier:
    """Sends READY=1, STATUS=..., STOPPING=1 and WATCHDOG=1 when run under systemd."""

    def __init__(self) -> None:
        addr = os.environ.get("NOTIFY_SOCKET", "")
        if addr.startswith("@"):
            addr = "\0" + addr[1:]
        self.address = addr
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and (not pid or pid == str(os.getpid()))
        # Ping at half the interval, as sd_watchdog_enabled(3) recommends.
        self.watchdog_interval: float | None = int(usec) / 2e6 if enabled else None

    @property
    def enabled(self) -> bool:
        """True when systemd gave us a notification socket."""
        return bool(self.address)

    def notify(self, **fields: str) -> None:
        """Send `KEY=VALUE` lines, e.g. `notify(READY="1", STATUS="3 sessions")`."""
        if not self.address:
            return
        payload = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        with contextlib.suppress(OSError):
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, self.address)

    def ready(self, status: str) -> None:
        """Startup finished: socket bound, state loaded."""
        self.notify(READY="1", STATUS=status)

    def status(self, status: str) -> None:
        """A one-line summary for `systemctl status`."""
        self.notify(STATUS=status)

    def stopping(self) -> None:
        """Shutdown has begun."""
        self.notify(STOPPING="1", STATUS="stopping")

    def watchdog(self) -> None:
        """The main loop is alive."""
        self.notify(WATCHDOG="1")
