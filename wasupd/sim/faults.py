"""Faults on demand: which are active, for which pages.

A fault has a scope: one account's phone number (its linked pages), or `*` (every page,
linked or not) when no phone is given. docs/simulator.md says what each one does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wasupd.sim.pages import PageConn

# docs/whatsapp-web.md §2a: Socket states forced on demand.
STATE_FAULTS = {
    "conflict": "CONFLICT",
    "timeout": "TIMEOUT",
    "tos_block": "TOS_BLOCK",
    "smb_tos_block": "SMB_TOS_BLOCK",
    "proxyblock": "PROXYBLOCK",
    "deprecated_version": "DEPRECATED_VERSION",
}
# Carried out by the page itself; the sticky ones also reach pages that connect later.
PAGE_FAULTS = ("memory", "growth", "slow_idb", "hang_close", "hang", "crash", "fast_sync")
STICKY_PAGE_FAULTS = ("memory", "growth", "slow_idb", "hang_close", "fast_sync")
SERVER_FAULTS = ("stall", "server_down", "server_up", "logout_after", "qr_never_scanned")
KINDS = (*SERVER_FAULTS, *STATE_FAULTS, *PAGE_FAULTS)
EVERYONE = "*"


def check_kind(kind: str) -> str:
    """`kind` if known; ValueError listing the known ones."""
    if kind not in KINDS:
        raise ValueError(f"unknown fault {kind!r}; known: {', '.join(KINDS)}")
    return kind


@dataclass
class Faults:
    """The active faults."""

    stall: set[str] = field(default_factory=set)
    server_down: bool = False
    states: dict[str, str] = field(default_factory=dict)  # scope -> Socket state
    logout_after: dict[str, float] = field(default_factory=dict)  # scope -> seconds
    sticky: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (kind, scope)

    @staticmethod
    def applies(scope: str, conn: PageConn) -> bool:
        """True when a fault of `scope` covers `conn`."""
        return scope == EVERYONE or (bool(conn.phone) and scope == conn.phone)

    def stalled(self, conn: PageConn) -> bool:
        """True when the server ignores this page and tells it nothing."""
        return any(self.applies(scope, conn) for scope in self.stall)

    def live(self, conn: PageConn) -> bool:
        """True when messages flow to and from this page (not stalled, not replaced by
        another page of its device, no forced state)."""
        return not conn.replaced and not self.stalled(conn) and self.forced_state(conn) is None

    def forced_state(self, conn: PageConn) -> str | None:
        """The Socket state forced on this page, if any (a takeover ends a CONFLICT)."""
        for scope, state in self.states.items():
            if self.applies(scope, conn) and not (state == "CONFLICT" and conn.took_over):
                return state
        return None

    def logout_delay(self, phone: str) -> float | None:
        """Seconds after pairing at which `phone` is logged out remotely, if set."""
        return self.logout_after.get(phone, self.logout_after.get(EVERYONE))

    def page_faults(self, conn: PageConn) -> list[tuple[str, dict[str, Any]]]:
        """Sticky page faults that cover `conn`."""
        return [(k, p) for (k, scope), p in self.sticky.items() if self.applies(scope, conn)]

    def set(self, kind: str, scope: str, params: dict[str, Any]) -> None:
        """Record a fault (server_up clears server_down)."""
        if kind == "stall":
            self.stall.add(scope)
        elif kind in ("server_down", "server_up"):
            self.server_down = kind == "server_down"
        elif kind == "logout_after":
            self.logout_after[scope] = float(params.get("seconds", 5.0))
        elif kind in STATE_FAULTS:
            self.states[scope] = STATE_FAULTS[kind]
        elif kind in STICKY_PAGE_FAULTS:
            self.sticky[(kind, scope)] = params

    def clear(self, kind: str, scope: str | None) -> None:
        """Forget a fault: for one scope, or for all of them when `scope` is None."""

        def keep(s: str) -> bool:
            return scope is not None and s != scope

        if kind == "stall":
            self.stall = {s for s in self.stall if keep(s)}
        elif kind in ("server_down", "server_up"):
            self.server_down = False
        elif kind == "logout_after":
            self.logout_after = {s: v for s, v in self.logout_after.items() if keep(s)}
        elif kind in STATE_FAULTS:
            state = STATE_FAULTS[kind]
            self.states = {s: v for s, v in self.states.items() if keep(s) or v != state}
        else:
            self.sticky = {(k, s): p for (k, s), p in self.sticky.items() if k != kind or keep(s)}

    def summary(self) -> dict[str, Any]:
        """What `state()` reports."""
        return {
            "stall": sorted(self.stall),
            "server_down": self.server_down,
            "states": dict(self.states),
            "logout_after": dict(self.logout_after),
            "page": sorted(f"{k}:{s}" for k, s in self.sticky),
        }
