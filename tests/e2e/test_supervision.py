"""Supervision with real Chromium under a real daemon: many sessions, random kills, hangs, daemon crash."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers.daemon import DaemonProcess
from tests.helpers.waiting import eventually


def states(d: DaemonProcess) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in d.call("session.list")}


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def zombies_of(pid: int) -> list[int]:
    out = []
    for p in psutil.process_iter(["ppid", "status"]):
        if p.info["ppid"] == pid and p.info["status"] == psutil.STATUS_ZOMBIE:
            out.append(p.pid)
    return out


def profile_processes(d: DaemonProcess) -> list[psutil.Process]:
    root = str(d.runtime_dir / "profiles")
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(a.startswith(f"--user-data-dir={root}") for a in p.info["cmdline"] or [])
    ]


def fleet(daemon_factory: Any, sim_factory: Any, n: int, **sections: Any) -> DaemonProcess:
    sim = sim_factory(time_factor=1.0)
    d = daemon_factory(
        browser={"url": sim.url, "stop_timeout": 3.0, **sections.pop("browser", {})},
        daemon={"start_stagger": 0.05},
        **sections,
    )
    for i in range(n):
        d.call("session.create", name=f"s{i:02d}")
    eventually(
        lambda: all(s["state"] == "qr" for s in states(d).values()),
        180,
        f"{n} sessions showing a QR",
    )
    return d


def test_twenty_sessions_start_and_stop(daemon_factory: Any, sim_factory: Any) -> None:
    """20 real Chromium sessions start and stop; afterwards no process uses their profiles."""
    d = fleet(daemon_factory, sim_factory, 20)
    assert len({s["pid"] for s in states(d).values()}) == 20
    for name in states(d):
        d.call("session.stop", name=name)
    assert all(s["state"] == "stopped" for s in states(d).values())
    assert not profile_processes(d)
    eventually(lambda: not zombies_of(d.proc.pid), 5, "no zombies")  # type: ignore[union-attr]


@pytest.mark.timeout(480)
def test_random_kill9_storm_every_session_comes_back(daemon_factory: Any, sim_factory: Any) -> None:
    """200 kill -9 of random processes (browser, renderer, zygote...) of random sessions: all recover,
    with no orphan and no zombie left behind."""
    # Every restart shows a fresh QR: lift the hourly QR limit, and cap backoff for the storm.
    d = fleet(
        daemon_factory,
        sim_factory,
        5,
        restart={"backoff_initial": 0.2, "backoff_max": 1.0, "max_failures": 0},
        qr={"max_per_hour": 0},
    )
    rng = random.Random(1)
    kills = 0
    while kills < 200:
        ready = eventually(
            lambda: [s for s in states(d).values() if s["state"] == "qr" and s["pid"]],
            60,
            "a live session",
        )
        s = rng.choice(ready)
        victims = tree(s["pid"])
        if not victims:
            continue
        victim = rng.choice(victims)
        try:
            victim.kill()
            kills += 1
        except psutil.NoSuchProcess:
            continue
        if kills % 50 == 0:  # let the fleet settle now and then
            eventually(
                lambda: all(x["state"] == "qr" for x in states(d).values()), 120, "fleet recovered"
            )
    eventually(
        lambda: all(x["state"] == "qr" for x in states(d).values()), 120, "every session back"
    )
    # A helper whose parent (a zygote) was killed is adopted by the daemon but keeps serving its
    # live browser, in the browser's process group: it dies with the group at the next stop.
    # A stray is a profile process outside every live browser's group.
    groups = {s["pid"] for s in states(d).values()}
    strays = [p.pid for p in profile_processes(d) if _pgid(p.pid) not in groups | {None}]
    assert not strays, f"orphans: {strays}"
    eventually(lambda: not zombies_of(d.proc.pid), 10, "no zombies")  # type: ignore[union-attr]


def test_stopped_browser_is_killed_and_restarted(daemon_factory: Any, sim_factory: Any) -> None:
    """SIGSTOP of a browser: the hang watchdog kills it after two missed pings (hang_timeout,
    then twice that) and stop_timeout."""
    d = fleet(
        daemon_factory,
        sim_factory,
        1,
        browser={"hang_timeout": 3.0},
        limits={"check_interval": 1.0},
    )
    pid = states(d)["s00"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    eventually(lambda: states(d)["s00"]["pid"] not in (pid, None), 45, "a new browser")
    # hang_timeout, then 2 x hang_timeout, + stop_timeout + two checks and the restart
    assert time.monotonic() - t0 < 3.0 + 6.0 + 3.0 + 8.0
    reasons = [h["reason"] for h in d.call("session.get", name="s00", history=10)["history"]]
    assert any("DevTools did not answer" in r for r in reasons)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_daemon_kill9_restart_cleans_and_restores(daemon_factory: Any, sim_factory: Any) -> None:
    """kill -9 of the daemon leaves browsers behind; the next daemon kills them and restores sessions."""
    d = fleet(daemon_factory, sim_factory, 3)
    old = {p.pid for p in profile_processes(d)}
    assert old
    d.kill9()
    d.start()
    eventually(
        lambda: all(s["state"] == "qr" for s in states(d).values()) and len(states(d)) == 3,
        120,
        "restored sessions",
    )
    assert not old & {
        p.pid for p in profile_processes(d) if p.is_running() and p.status() != "zombie"
    }
    assert '"leftover_browser_killed"' in d.log() or '"leftover_profile"' in d.log()
    assert not [p for p in Path(d.runtime_dir / "profiles").iterdir() if p.name.startswith(".")]
