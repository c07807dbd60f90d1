"""The session runner's rules, with fakes for the launcher, driver, profiles and clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.runner_fakes import Harness, settle
from wasupd.config import RestartConfig
from wasupd.errors import InvalidState, ProfileError, RateLimited
from wasupd.supervision.backoff import Backoff
from wasupd.supervision.seams import TreeUsage
from wasupd.supervision.states import LEGAL, SessionState, check_transition

FAST = {"limits": {"check_interval": 1.0}, "restart": {"backoff_initial": 1.0, "max_failures": 3}}


async def connected(h: Harness) -> None:
    await h.runner.start()
    await settle()
    h.push("state", "qr")
    h.push("state", "syncing")
    h.push("state", "connected")
    await settle()
    assert h.runner.state is SessionState.CONNECTED


async def test_start_to_connected_records_each_transition(tmp_path: Path) -> None:
    """stopped -> starting -> qr -> syncing -> connected, each stored with a reason."""
    async with Harness(tmp_path, **FAST) as h:
        await connected(h)
        assert h.states == ["starting", "qr", "syncing", "connected"]
        assert h.transitions[0].reason == "start requested"
        assert h.log[:2] == ["prepare", "launch:100"]


async def test_browser_death_backs_off_then_restarts(tmp_path: Path) -> None:
    """A dead browser: backoff for backoff_initial, then starting again; restarts counted."""
    async with Harness(tmp_path, **FAST) as h:
        await connected(h)
        h.launcher.handles[-1].crash(-9)
        await settle()
        assert h.runner.state is SessionState.BACKOFF
        assert "browser exited with status -9" in h.runner.reason
        assert h.runner.restarts == 1
        await h.clock.advance(1.0)
        assert h.states[-1] == "starting"
        assert h.log.count("prepare") == 2 and "release:wipe=False" in h.log


async def test_backoff_to_failed_after_n_deaths(tmp_path: Path) -> None:
    """max_failures deaths within failure_window end in failed, naming the count and cause."""
    async with Harness(tmp_path, **FAST) as h:
        h.launcher.fail_next = 10
        await h.runner.start()
        for delay in (1.0, 2.0):
            await settle()
            assert h.runner.state is SessionState.BACKOFF
            await h.clock.advance(delay)
        await settle()
        assert h.runner.state is SessionState.FAILED
        assert h.runner.reason.startswith("3 deaths in 900 s; last: browser exited with status 1")


async def test_stop_during_backoff_is_immediate(tmp_path: Path) -> None:
    """A stop while backing off goes straight to stopped, without waiting out the delay."""
    async with Harness(tmp_path, **{**FAST, "restart": {"backoff_initial": 300.0}}) as h:
        h.launcher.fail_next = 1
        await h.runner.start()
        await settle()
        assert h.runner.state is SessionState.BACKOFF
        await h.runner.stop()
        assert h.runner.state is SessionState.STOPPED


async def test_requested_stop_is_not_a_death(tmp_path: Path) -> None:
    """stop: stopping -> stopped, browser stopped before the profile is released, no restart counted."""
    async with Harness(tmp_path, **FAST) as h:
        await connected(h)
        await h.runner.stop()
        assert h.states[-2:] == ["stopping", "stopped"]
        assert h.runner.restarts == 0 and h.runner.backoff.consecutive == 0
        assert h.log.index("stop:100") < h.log.index("release:wipe=False")


async def test_memory_watchdog_restarts_cleanly(tmp_path: Path) -> None:
    """PSS over limits.memory_mib: stopping with the reason, then backoff and a new browser."""
    async with Harness(
        tmp_path, **{**FAST, "limits": {"check_interval": 1.0, "memory_mib": 200}}
    ) as h:
        await connected(h)
        h.launcher.handles[-1].sample = TreeUsage(pss_bytes=300 << 20, fds=10, processes=3)
        await h.clock.advance(1.0)
        assert "watchdog: memory 300 MiB > limit 200 MiB" in h.transitions[-1].reason
        assert "stopping" in h.states and h.runner.state is SessionState.BACKOFF


async def test_hang_watchdog_kills_and_restarts(tmp_path: Path) -> None:
    """A DevTools ping that fails trips the hang watchdog: the browser is stopped and restarted."""
    async with Harness(tmp_path, **FAST) as h:
        await connected(h)
        h.launcher.handles[-1].hung = True
        await h.clock.advance(1.0)
        assert h.runner.state is SessionState.BACKOFF
        assert "DevTools did not answer" in h.runner.reason
        assert "stop:100:nodevtools" in h.log


async def test_liveness_degrades_reloads_then_restarts(tmp_path: Path) -> None:
    """Silent and failing probes: degraded + page reload, then a browser restart."""
    cfg = {**FAST, "health": {"silence_timeout": 5.0, "probe_interval": 1.0, "probe_timeout": 1.0}}
    async with Harness(tmp_path, **cfg) as h:
        await connected(h)
        h.driver.probe_error = RuntimeError("no answer")
        await h.clock.advance(6.0)
        assert SessionState.DEGRADED.value in h.states
        assert h.driver.reloads == 1
        await h.clock.advance(2.0)
        assert h.runner.state in (SessionState.BACKOFF, SessionState.STARTING)
        assert "after a page reload" in " ".join(t.reason for t in h.transitions)


async def test_probe_success_clears_degraded(tmp_path: Path) -> None:
    """A probe that answers while degraded brings the session back to connected."""
    cfg = {**FAST, "health": {"silence_timeout": 5.0, "probe_interval": 1.0, "probe_timeout": 1.0}}
    async with Harness(tmp_path, **cfg) as h:
        await connected(h)
        h.driver.probe_error = RuntimeError("no answer")
        await h.clock.advance(6.0)
        h.driver.probe_error = None
        await h.clock.advance(1.0)
        assert h.runner.state is SessionState.CONNECTED


async def test_logout_wipes_only_after_the_browser_exited(tmp_path: Path) -> None:
    """A remote logout stops the browser first, then wipes the profile, and ends logged_out."""
    async with Harness(tmp_path, **FAST) as h:
        await connected(h)
        h.push("logout", reason="logged out by the phone")
        await settle()
        assert h.runner.state is SessionState.LOGGED_OUT
        assert h.log.index("stop:100") < h.log.index("release:wipe=True")


async def test_bad_archive_fails_without_launching(tmp_path: Path) -> None:
    """A ProfileError from prepare ends in failed with its message; no browser is started."""
    async with Harness(tmp_path, **FAST) as h:
        h.profiles.prepare_error = ProfileError("chunk 2 fails authentication")
        await h.runner.start()
        await settle()
        assert h.runner.state is SessionState.FAILED
        assert h.runner.reason == "chunk 2 fails authentication"
        assert not h.launcher.handles


async def test_qr_generation_limit(tmp_path: Path) -> None:
    """More new QR generations per hour than qr.max_per_hour: failed, and a start is rate limited."""
    async with Harness(tmp_path, **{**FAST, "qr": {"max_per_hour": 2}}) as h:
        await h.runner.start()
        await settle()
        for _ in range(3):
            h.push("qr", payload="p", rotation=0, expires_at=0)
            await settle()
        assert h.runner.state is SessionState.FAILED
        assert h.runner.reason.startswith("QR limit: 2 generations in the last hour")
        with pytest.raises(RateLimited):
            await h.runner.start()


async def test_start_refused_when_running(tmp_path: Path) -> None:
    """Starting a running session is InvalidState."""
    async with Harness(tmp_path, **FAST) as h:
        await connected(h)
        with pytest.raises(InvalidState):
            await h.runner.start()


def test_backoff_is_exponential_capped_and_resets() -> None:
    """Delays double up to the cap; a stable period resets the consecutive count."""
    b = Backoff(RestartConfig(backoff_initial=1, backoff_factor=2, backoff_max=5, max_failures=0))
    assert [b.death(float(t), "x").delay for t in range(5)] == [1, 2, 4, 5, 5]
    b.note_running_since(10.0, 200.0)
    assert b.death(201.0, "x").delay == 1


def test_transition_table_is_closed_and_checked() -> None:
    """Every state has an entry; illegal transitions raise InvalidState."""
    assert set(LEGAL) == set(SessionState)
    with pytest.raises(InvalidState):
        check_transition("s", SessionState.STOPPED, SessionState.CONNECTED)
    check_transition("s", SessionState.BACKOFF, SessionState.STOPPED)
