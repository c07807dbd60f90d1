"""`wasupctl status`, `session show` and `health` against a real daemon before the first resource
sample and once a session is connected: no bare `-` for a live browser, counts in words."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.helpers.waiting import eventually
from wasupd.errors import InvalidState

pytestmark = pytest.mark.chromium

CTL = [sys.executable, "-m", "wasupctl.app"]
ALICE = "15550001111"


def ctl(d: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """Run wasupctl against `d`; its completed process (120 columns, so no cell is cut)."""
    return subprocess.run(
        [*CTL, "--socket", str(d.socket), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"},
    )


def row(out: str, name: str) -> str:
    """The table line of session `name`."""
    return next(line for line in out.splitlines() if line.split()[:1] == [name])


def qr_payload(d: Any) -> str | None:
    try:
        return str(d.call("session.qr", name="alice")["payload"])
    except InvalidState:
        return None


def test_a_live_session_before_its_first_sample_says_measuring(
    daemon_factory: Any, sim_factory: Any
) -> None:
    """With the first resource sample far away, a running session's PSS reads `measuring` in
    `status` and `session show` (a stopped one keeps `-`), and `health` of one connected
    session says `1 session OK`."""
    sim = sim_factory(accounts=[ALICE])
    d = daemon_factory(browser={"url": sim.url}, limits={"check_interval": 3600.0})
    d.call("session.create", name="alice")
    d.call("session.create", name="idle", start=False)
    eventually(lambda: qr_payload(d), 90, "a QR")
    out = ctl(d, "status")
    assert out.returncode == 0, out.stderr
    assert "measuring" in row(out.stdout, "alice")
    assert "measuring" not in row(out.stdout, "idle")
    show = ctl(d, "session", "show", "alice")
    assert "measuring" in row(show.stdout, "memory")
    sim.call("scan", payload=eventually(lambda: qr_payload(d), 30, "a QR"), phone=ALICE)
    d.call("session.delete", name="idle")
    # The simulated connection may blip (connected -> degraded -> connected): wait for OK.
    health = eventually(
        lambda: (h := ctl(d, "health")).returncode == 0 and h, 60, "health OK of one session"
    )
    assert health.stdout == "OK - 1 session OK\n"


def test_status_shows_the_figure_once_sampled(daemon_factory: Any, sim_factory: Any) -> None:
    """After the first sample the PSS column holds a size."""
    sim = sim_factory()
    d = daemon_factory(browser={"url": sim.url}, limits={"check_interval": 0.2})
    d.call("session.create", name="alice")
    d.wait_state("alice", "qr", 90)
    eventually(lambda: d.call("session.get", name="alice", history=0)["usage"], 20, "a sample")
    line = row(ctl(d, "status").stdout, "alice")
    assert "MiB" in line and "measuring" not in line
