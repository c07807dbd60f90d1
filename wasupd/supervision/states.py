"""Session states (the values users see) and the one table of legal transitions.

`check_transition` is the only place that decides whether a state change is legal; the
session runner calls it before recording any change.
"""

from __future__ import annotations

import enum

from wasupd.errors import InvalidState


class SessionState(enum.StrEnum):
    """Where a session is in its life; the values are the contract shown to users."""

    STOPPED = "stopped"
    STARTING = "starting"
    QR = "qr"
    SYNCING = "syncing"
    CONNECTED = "connected"
    DEGRADED = "degraded"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    LOGGED_OUT = "logged_out"
    FAILED = "failed"


S = SessionState

# States in which a browser process may exist.
RUNNING_STATES = frozenset({S.STARTING, S.QR, S.SYNCING, S.CONNECTED, S.DEGRADED, S.STOPPING})
# States a user `start` may leave (an explicit start is the only way out of FAILED).
STARTABLE_STATES = frozenset({S.STOPPED, S.FAILED, S.LOGGED_OUT, S.BACKOFF})
# States that need no browser and no scheduled work: safe to delete.
IDLE_STATES = frozenset({S.STOPPED, S.FAILED, S.LOGGED_OUT})
# States in which the page is up and linked enough to send.
SENDABLE_STATES = frozenset({S.CONNECTED})

# States in which the page is up (showing a QR, syncing or linked): the page itself moves a
# session between them.
LIVE_STATES = frozenset({S.QR, S.SYNCING, S.CONNECTED, S.DEGRADED})
_LIVE = LIVE_STATES

LEGAL: dict[SessionState, frozenset[SessionState]] = {
    S.STOPPED: frozenset({S.STARTING, S.FAILED, S.LOGGED_OUT}),
    S.STARTING: frozenset(_LIVE | {S.BACKOFF, S.STOPPING, S.FAILED, S.LOGGED_OUT}),
    S.QR: frozenset(_LIVE - {S.QR} | {S.BACKOFF, S.STOPPING, S.FAILED, S.LOGGED_OUT, S.STARTING}),
    S.SYNCING: frozenset(
        _LIVE - {S.SYNCING} | {S.BACKOFF, S.STOPPING, S.FAILED, S.LOGGED_OUT, S.STARTING}
    ),
    S.CONNECTED: frozenset(
        _LIVE - {S.CONNECTED} | {S.BACKOFF, S.STOPPING, S.FAILED, S.LOGGED_OUT, S.STARTING}
    ),
    S.DEGRADED: frozenset(
        _LIVE - {S.DEGRADED} | {S.BACKOFF, S.STOPPING, S.FAILED, S.LOGGED_OUT, S.STARTING}
    ),
    # A logout during a backoff wipes the profile with no browser running.
    S.BACKOFF: frozenset({S.STARTING, S.STOPPED, S.FAILED, S.LOGGED_OUT}),
    # STARTING: a clean restart (requested, or a watchdog trip) stops then starts again.
    S.STOPPING: frozenset({S.STOPPED, S.LOGGED_OUT, S.FAILED, S.BACKOFF, S.STARTING}),
    S.LOGGED_OUT: frozenset({S.STARTING, S.STOPPED, S.FAILED}),
    S.FAILED: frozenset({S.STARTING, S.STOPPED, S.LOGGED_OUT}),
}


def is_legal(old: SessionState, new: SessionState) -> bool:
    """True when `old -> new` is in the transition table (a same-state change never is)."""
    return new in LEGAL[old]


def check_transition(name: str, old: SessionState, new: SessionState) -> None:
    """Raise `InvalidState` unless `old -> new` is legal for session `name`."""
    if not is_legal(old, new):
        raise InvalidState(
            f"session {name!r}: illegal transition {old.value} -> {new.value}",
            session=name,
            state=old.value,
        )
