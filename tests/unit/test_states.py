"""The session state table: closed, checked in one place, with every path the runner takes."""

from __future__ import annotations

import itertools

import pytest

from wasupd.errors import InvalidState
from wasupd.supervision.states import (
    IDLE_STATES,
    LEGAL,
    RUNNING_STATES,
    STARTABLE_STATES,
    SessionState,
    check_transition,
    is_legal,
)

S = SessionState
LIVE = (S.QR, S.SYNCING, S.CONNECTED, S.DEGRADED)

# Every change the runner makes, with the rule that makes it.
RUNNER_PATHS = [
    (S.STOPPED, S.STARTING),  # start
    (S.FAILED, S.STARTING),  # explicit start leaves failed
    (S.LOGGED_OUT, S.STARTING),  # start to link again
    (S.STARTING, S.FAILED),  # bad archive / key
    (S.STARTING, S.BACKOFF),  # launch failed, page did not load
    (S.STARTING, S.STOPPING),  # stop during a launch
    *((S.STARTING, s) for s in LIVE),  # page reports
    *((a, b) for a in LIVE for b in LIVE if a is not b),  # qr/syncing/connected/degraded moves
    *((s, S.BACKOFF) for s in LIVE),  # death, hang
    *((s, S.STOPPING) for s in LIVE),  # stop, restart, watchdog trip, logout, refusal
    (S.STOPPING, S.STOPPED),  # requested stop done
    (S.STOPPING, S.STARTING),  # clean restart
    (S.STOPPING, S.BACKOFF),  # watchdog trip: restart after a delay
    (S.STOPPING, S.LOGGED_OUT),  # logout done
    (S.STOPPING, S.FAILED),  # refusal, QR limit
    (S.BACKOFF, S.STARTING),  # delay over
    (S.BACKOFF, S.STOPPED),  # stop during backoff, at once
    (S.BACKOFF, S.FAILED),  # too many deaths
    (S.BACKOFF, S.LOGGED_OUT),  # logout during backoff
    (S.STOPPED, S.LOGGED_OUT),  # logout of a stopped session
    (S.FAILED, S.LOGGED_OUT),  # logout of a failed session
]


def test_table_is_closed() -> None:
    """Every state has an entry and every target is a state."""
    assert set(LEGAL) == set(S)
    assert all(targets <= set(S) for targets in LEGAL.values())


def test_no_state_moves_to_itself() -> None:
    """A same-state change is never a transition."""
    assert not any(is_legal(s, s) for s in S)


@pytest.mark.parametrize(("old", "new"), RUNNER_PATHS, ids=lambda s: str(s))
def test_every_runner_path_is_legal(old: SessionState, new: SessionState) -> None:
    """Each path the runner takes passes check_transition."""
    check_transition("s", old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [(a, b) for a, b in itertools.product(S, S) if not is_legal(a, b)],
    ids=lambda s: str(s),
)
def test_illegal_transitions_raise_invalid_state(old: SessionState, new: SessionState) -> None:
    """Anything outside the table raises InvalidState naming both states."""
    with pytest.raises(InvalidState, match=f"{old.value} -> {new.value}"):
        check_transition("s", old, new)


def test_failed_is_left_only_by_explicit_actions() -> None:
    """failed leads only to starting (explicit start), stopped or logged_out — never a live state."""
    assert LEGAL[S.FAILED] == {S.STARTING, S.STOPPED, S.LOGGED_OUT}


def test_idle_states_cannot_reach_a_live_state_directly() -> None:
    """No browser may appear without passing through starting."""
    for idle in IDLE_STATES | {S.BACKOFF}:
        assert not LEGAL[idle] & set(LIVE)


def test_state_groups_are_consistent() -> None:
    """Startable and idle states hold no browser; running states are not startable."""
    assert not RUNNING_STATES & STARTABLE_STATES
    assert IDLE_STATES <= STARTABLE_STATES
    assert not IDLE_STATES & RUNNING_STATES
