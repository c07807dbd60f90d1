"""End to end, liveness: a "connected" page that went silent is found and recovered in time."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.e2e.test_linking import ALICE, BOB, Watch, ctl, history, link_by_qr, start
from tests.helpers.waiting import eventually

# Small but realistic proportions: silence 1 s, checks every 0.25 s, probe answer within 1 s.
HEALTH = {"silence_timeout": 1.0, "probe_interval": 0.5, "probe_timeout": 1.0}
LIMITS = {"check_interval": 0.25}
DETECT_BOUND = 1.0 + 0.25 + 1.0 + 2.0  # silence + one check + probe timeout + slack
RESTART = {"backoff_initial": 0.2}


def test_silent_stall_detected_and_recovered(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """The server silently drops everything while the state stays CONNECTED: the probe fails
    within the configured time and the session goes degraded with the reason; once traffic flows
    again it is connected, healthy, and messages go both ways."""
    sim = sim_factory(time_factor=0.2, accounts=[ALICE, BOB])
    d = start(daemon_factory, sim, health=HEALTH, limits=LIMITS, restart=RESTART)
    link_by_qr(d, sim, "quiet", ALICE, tmp_path)
    w = Watch(d, sessions=["quiet"], types=["state"])
    try:
        stalled = time.monotonic()
        sim.call("fault", kind="stall", phone=ALICE)
        degraded = w.state("quiet", "degraded", timeout=DETECT_BOUND + 5)
        assert time.monotonic() - stalled < DETECT_BOUND
        assert "liveness probe failed" in degraded["reason"]
        assert "existence query" in degraded["reason"]
        sim.call("clear_fault", kind="stall")
        cleared = time.monotonic()
        w.state("quiet", "connected", timeout=30)
        assert time.monotonic() - cleared < 15
    finally:
        w.close()
    assert ctl(d, "health", "quiet").returncode == 0
    out = ctl(d, "send", BOB, "after the stall", "--from", "quiet", "--wait", "sent")
    assert out.returncode == 0, out.stderr
    assert "after the stall" in [m["body"] for m in sim.call("received", phone=BOB)]
    sim.call("inject", to=ALICE, **{"from": BOB}, text="and back")
    eventually(
        lambda: any(m["body"] == "and back" for m in d.call("inbox.list", session="quiet")),
        15,
        "reply after recovery",
    )


def test_persistent_stall_escalates_to_a_browser_restart(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """A stall that a page reload does not cure (the page reconnects, the server stays silent)
    ends in a browser restart after the reload, each step recorded in the history."""
    # Real-time simulator: a reloaded page needs 2 s to sync, so the probe after the reload
    # (probe_interval 0.5 s) meets the reconnected but still silent page.
    sim = sim_factory(time_factor=1.0, accounts=[ALICE])
    d = start(daemon_factory, sim, health=HEALTH, limits=LIMITS, restart=RESTART)
    link_by_qr(d, sim, "stuck", ALICE, tmp_path)
    w = Watch(d, sessions=["stuck"], types=["state"])
    try:
        sim.call("fault", kind="stall", phone=ALICE)
        w.state("stuck", "degraded", timeout=DETECT_BOUND + 5)
        restart = w.state("stuck", "starting", timeout=20)
        assert "after a page reload" in restart["reason"]
        sim.call("clear_fault", kind="stall")
        w.state("stuck", "connected", timeout=30)
    finally:
        w.close()
    steps = [h["to"] for h in history(d, "stuck")]
    assert steps[steps.index("degraded") :][-1] == "connected"


def test_conflict_is_degraded_then_taken_back(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """WhatsApp Web opened elsewhere (CONFLICT) makes the session degraded with that reason and
    health WARNING; when the other side lets go, liveness recovery brings it back connected."""
    sim = sim_factory(time_factor=0.2, accounts=[ALICE])
    d = start(daemon_factory, sim, health=HEALTH, limits=LIMITS, restart=RESTART)
    link_by_qr(d, sim, "taken", ALICE, tmp_path)
    w = Watch(d, sessions=["taken"], types=["state"])
    try:
        sim.call("fault", kind="conflict", phone=ALICE)
        degraded = w.state("taken", "degraded")
        assert "CONFLICT" in degraded["reason"] and "opened elsewhere" in degraded["reason"]
        assert ctl(d, "health", "taken").returncode == 1
        sim.call("clear_fault", kind="conflict")
        w.state("taken", "connected", timeout=30)
    finally:
        w.close()
