"""Double runs: two pages presenting one device's credentials at once.

On WhatsApp a linked device's credentials are one connection at a time: when a second page
connects with them, the server keeps the newcomer and moves the other to `Socket.state`
CONFLICT ("WhatsApp is open in another window"); `Socket.takeover()` (wwebjs calls it with
`takeoverOnConflict`) makes a conflicted page the active one again and conflicts the other
(docs/whatsapp-web.md §2a, §2d). The simulator does the same and records every such moment
here, so a test can assert that a page never met another one of its device (the register stays
empty) or see exactly when and where it did.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Conflict:
    """One page moved to CONFLICT because another page of the same device became active."""

    phone: str
    device: str
    page: int  # the page moved to CONFLICT
    by: int  # the page that became the active one
    how: str  # "connect" (it presented the credentials) or "takeover" (Socket.takeover())
    at: float = field(default_factory=time.time)

    def summary(self) -> dict[str, Any]:
        """What the control API's `conflicts` lists."""
        return {
            "phone": self.phone,
            "device": self.device,
            "page": self.page,
            "by": self.by,
            "how": self.how,
            "at": self.at,
        }


@dataclass
class Conflicts:
    """Every conflict since the simulator started, in order; never forgotten."""

    seen: list[Conflict] = field(default_factory=list)

    def record(self, conflict: Conflict) -> None:
        """Remember one conflict."""
        self.seen.append(conflict)

    def of(self, phone: str = "") -> list[dict[str, Any]]:
        """The conflicts of `phone` (every account's when '')."""
        return [c.summary() for c in self.seen if not phone or c.phone == phone]
