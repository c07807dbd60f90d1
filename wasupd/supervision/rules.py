"""What a page report means for the session: a pure function, unit tested without a browser.

`decide(report, facts)` reads one `DriverReport` and what the runner knows about linking and
returns a `Decision`: the state to move to (with its reason), the QR or pairing code now on
offer, whether the link just completed (seal the new credentials), or an `End` when the
browser's watch must end (a logout, a refusal, a crash). The runner applies the decision; it
never interprets a report itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from wasupd.supervision.seams import DriverReport
from wasupd.supervision.states import LIVE_STATES, SessionState

S = SessionState
LIVE = LIVE_STATES  # the page is up: reports may move the session among these

Outcome = Literal["stop", "close", "restart", "logout", "failed", "death", "trip"]
# Ends that go through STOPPING (we stop the browser); a death is found, not caused.
GRACEFUL = frozenset({"stop", "close", "restart", "logout", "failed", "trip"})


@dataclass(frozen=True, slots=True)
class End:
    """Why the watch of one browser ended."""

    outcome: Outcome
    reason: str
    hung: bool = False  # DevTools is dead: skip the polite close, go straight to signals
    unlink: bool = False  # a requested logout: unlink the device in the page first


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """What the runner knows when a report comes in."""

    state: SessionState
    linking: bool  # a QR or pairing code was on offer: the next connect is a fresh link


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What to do about one report; the defaults mean "nothing changes"."""

    linking: bool
    state: SessionState | None = None  # move here (only when it differs from the current state)
    reason: str = ""
    qr: dict[str, Any] | None = None  # a QR now on offer (wakes `wait_qr` even in the same state)
    code: dict[str, Any] | None = None  # a pairing code now on offer
    connected: bool = False  # linked and connected: no QR or code is on offer any more
    checkpoint: bool = False  # freshly linked: seal the new credentials at the next check
    end: End | None = None
    unknown_state: str = ""  # the page named a state this daemon does not know (log it)


def new_qr_generation(report: DriverReport) -> bool:
    """True for the first QR of a generation: it counts against `qr.max_per_hour`."""
    return report.kind == "qr" and report.data.get("rotation") == 0


def decide(report: DriverReport, facts: Facts) -> Decision:
    """The meaning of `report` given `facts` (a QR over the hourly limit is refused earlier)."""
    reason = str(report.data.get("reason") or "")
    if report.kind == "state":
        return _page_state(report, facts, reason)
    if report.kind == "qr":
        return Decision(
            linking=True,
            qr=dict(report.data),
            state=None if facts.state is S.QR else S.QR,
            reason="waiting for the QR to be scanned",
        )
    if report.kind == "code":
        return Decision(linking=True, code=dict(report.data))
    if (end := _end(report.kind, reason)) is not None:
        return Decision(linking=facts.linking, end=end)
    return Decision(linking=facts.linking)  # messages, acks, activity: only signs of life


def _end(kind: str, reason: str) -> End | None:
    if kind == "logout":
        return End("logout", reason or "logged out by the phone")
    if kind == "failed":
        return End("failed", reason or "refused by WhatsApp")
    if kind == "crash":
        return End("death", reason or "page crashed (Target closed)")
    return None


def _page_state(report: DriverReport, facts: Facts, reason: str) -> Decision:
    try:
        new = SessionState(report.value)
    except ValueError:
        return Decision(linking=facts.linking, unknown_state=report.value)
    if new not in LIVE:  # the page cannot stop, start or fail a session by naming a state
        return Decision(linking=facts.linking)
    target = None if new is facts.state else new
    why = reason or f"WhatsApp is {new.value}"
    if new is S.QR:
        return Decision(linking=True, state=target, reason=why)
    if new is S.CONNECTED:
        # A reload's liveness check still runs: only a probe that answers proves the page is
        # alive (a page can claim CONNECTED while its link is dead).
        return Decision(
            linking=False, state=target, reason=why, connected=True, checkpoint=facts.linking
        )
    return Decision(linking=facts.linking, state=target, reason=why)
