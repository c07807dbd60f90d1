"""What the operator asked a session for: one record instead of scattered flags.

The last request wins, except that nothing overrides `close` (the daemon is shutting down).
A request other than `run` is also a command for the browser running now: it stays `pending`
until the runner's loop takes it (`take`), which turns it into the `End` of that browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from wasupd.supervision.rules import End

Ask = Literal["run", "stop", "restart", "logout", "close"]
REASONS: dict[Ask, str] = {
    "run": "start requested",
    "stop": "stop requested",
    "restart": "restart requested",
    "logout": "logged out on request",
    "close": "daemon shutdown",
}


@dataclass(slots=True)
class Intent:
    """The operator's last request, its reason, and whether the loop has taken it yet."""

    ask: Ask = "stop"
    reason: str = ""
    pending: bool = False

    @property
    def wants_run(self) -> bool:
        """A browser should be running (asked to start or restart, not stopped since)."""
        return self.ask in ("run", "restart")

    @property
    def closing(self) -> bool:
        """The daemon is shutting down: no start from now on."""
        return self.ask == "close"

    @property
    def restart_pending(self) -> bool:
        """A restart was asked for and not taken yet (a backoff ends with its reason)."""
        return self.pending and self.ask == "restart"

    def request(self, ask: Ask, reason: str = "") -> None:
        """Record a request (ignored once closing); every ask but `run` is a pending command."""
        if self.closing:
            return
        self.ask, self.reason, self.pending = ask, reason or REASONS[ask], ask != "run"

    def settle(self) -> None:
        """The loop gave up or finished: nothing should run and nothing is pending."""
        if not self.closing:
            self.ask, self.reason = "stop", REASONS["stop"]
        self.pending = False

    def take(self) -> End | None:
        """The pending command as the `End` of the current browser (None when there is none)."""
        ask = self.ask
        if not self.pending or ask == "run":
            return None
        self.pending = False
        if ask == "logout":
            return End("logout", self.reason, unlink=True)
        return End(ask, self.reason)
