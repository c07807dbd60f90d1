"""Admission control, metrics, top and health through the CLI against a real daemon."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from tests.helpers.waiting import eventually

CTL = [sys.executable, "-m", "wasupctl.app"]


def test_admission_metrics_top(daemon_factory: Any, sim_factory: Any) -> None:
    """max_sessions refuses a second start with Busy; metrics and top show the running session."""
    sim = sim_factory()
    d = daemon_factory(browser={"url": sim.url}, limits={"max_sessions": 1})
    d.call("session.create", name="one")
    d.wait_state("one", "qr", 90)
    out = subprocess.run(
        [*CTL, "--socket", str(d.socket), "session", "create", "two", "--no-wait"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "max_sessions (1)" in out.stderr
    assert d.call("session.get", name="two", history=0)["state"] == "stopped"
    metrics = subprocess.run(
        [*CTL, "--socket", str(d.socket), "metrics"], capture_output=True, text=True, timeout=60
    ).stdout
    assert 'wasupd_session_state{session="one",state="qr"} 1.0' in metrics
    assert 'wasupd_sessions{state="stopped"} 1.0' in metrics
    eventually(lambda: d.call("session.get", name="one", history=0)["usage"], 20, "a usage sample")
    metrics = subprocess.run(
        [*CTL, "--socket", str(d.socket), "metrics"], capture_output=True, text=True, timeout=60
    ).stdout
    assert 'wasupd_session_pss_bytes{session="one"}' in metrics
    top = subprocess.run(
        [*CTL, "--socket", str(d.socket), "top", "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert top.returncode == 0 and "one" in top.stdout and "qr" in top.stdout
    health = subprocess.run(
        [*CTL, "--socket", str(d.socket), "health", "one"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert health.returncode == 1 and health.stdout.startswith("WARNING")
    bad = subprocess.run(
        [*CTL, "--socket", str(d.socket), "session", "rm", "one"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 5 and "--force" in bad.stderr
    assert (
        subprocess.run(
            [*CTL, "--socket", str(d.socket), "session", "rm", "one", "--force"],
            capture_output=True,
            timeout=90,
        ).returncode
        == 0
    )
