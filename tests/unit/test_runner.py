"""The session runner's lifecycle: start, stop, restart, deaths and backoff, logout, shutdown.

Fakes stand in for the launcher, browser, page driver and profiles; time is virtual, so backoff
delays cost nothing. Every transition is checked legal by the harness, and no fake browser may
outlive a test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.unit.runner_fakes import BOUND, Harness, request_for, settle, until
from wasupd.errors import Busy, InvalidState, KeyUnavailable, ProfileError, StoreError
from wasupd.supervision.monitor import limits_for
from wasupd.supervision.seams import LaunchRequest, SessionOptions
from wasupd.supervision.states import SessionState

S = SessionState


# -- starting ---------------------------------------------------------------------------------


async def test_stopped_to_connected_records_each_transition(tmp_path: Path) -> None:
    """stopped -> starting -> qr -> syncing -> connected, each stored with a reason and time."""
    async with Harness(tmp_path) as h:
        await h.connected()
        assert h.states == ["starting", "qr", "syncing", "connected"]
        assert h.transitions[0].reason == "start requested"
        assert all(t.reason and t.at > 0 and t.session == "s1" for t in h.transitions)
        assert h.log[:3] == ["prepare", "launching", "launch:100"]
        assert h.runner.pid == 100 and h.runner.started_at is not None


async def test_a_store_that_cannot_record_transitions_does_not_stop_supervision(
    tmp_path: Path,
) -> None:
    """Every transition fails to be stored (a database gone): the session still connects,
    stop() still returns once the browser is gone, and no crash leaves it `failed`."""
    async with Harness(tmp_path) as h:
        h.transition_error = StoreError("the database did not answer within 3 s")
        await h.connected()
        await h.runner.stop()
        assert h.states == ["starting", "qr", "syncing", "connected", "stopping", "stopped"]
        assert h.state is S.STOPPED and "failed" not in h.states


async def test_start_returns_once_the_loop_took_it(tmp_path: Path) -> None:
    """start() returns with the session already starting (or beyond), not still stopped."""
    async with Harness(tmp_path) as h:
        await h.runner.start()
        assert h.state is not S.STOPPED and h.states[0] == "starting"


async def test_start_refused_when_running(tmp_path: Path) -> None:
    """Starting a session that runs is InvalidState naming its state."""
    async with Harness(tmp_path) as h:
        await h.connected()
        with pytest.raises(InvalidState, match="connected"):
            await h.runner.start()


async def test_launch_request_built_from_the_prepared_profile(tmp_path: Path) -> None:
    """The launcher gets build_request(name, dir) with the dir profiles.prepare() returned."""
    async with Harness(tmp_path) as h:
        await h.started()
        assert h.launcher.requests[0].session == "s1"
        assert h.launcher.requests[0].profile_dir == tmp_path


@pytest.mark.parametrize(
    "error",
    [ProfileError("chunk 2 fails authentication"), KeyUnavailable("key file is 0644")],
)
async def test_starting_to_failed_on_a_bad_archive(tmp_path: Path, error: Exception) -> None:
    """prepare() failing ends in failed with its message; no browser, no release of the archive."""
    async with Harness(tmp_path) as h:
        h.profiles.prepare_error = error
        await h.runner.start()
        await h.reach(S.FAILED)
        assert h.states == ["starting", "failed"]
        assert h.runner.reason == str(error)
        assert not h.launcher.requests and not any(e.startswith("release") for e in h.log)


async def test_failed_to_starting_on_explicit_start(tmp_path: Path) -> None:
    """An explicit start is the way out of failed; it starts a browser again."""
    async with Harness(tmp_path) as h:
        h.profiles.prepare_error = ProfileError("bad")
        await h.runner.start()
        await h.reach(S.FAILED)
        h.profiles.prepare_error = None
        await h.connected()
        assert h.states[-4:] == ["starting", "qr", "syncing", "connected"]


# -- stopping ---------------------------------------------------------------------------------


async def test_connected_to_stopped_is_not_a_death(tmp_path: Path) -> None:
    """stop: stopping -> stopped; browser stopped before the profile is released; no restart."""
    async with Harness(tmp_path) as h:
        await h.connected()
        await h.runner.stop()
        assert h.states[-2:] == ["stopping", "stopped"]
        assert h.runner.restarts == 0 and h.runner.backoff.consecutive == 0
        assert h.log.index("detach") < h.log.index("stop:100") < h.log.index("release:wipe=False")
        assert h.runner.pid is None and not h.launcher.alive


async def test_stop_interrupts_a_launch(tmp_path: Path) -> None:
    """A stop while the browser is launching cancels the launch and ends stopped at once."""
    async with Harness(tmp_path) as h:
        h.launcher.gate = asyncio.Event()
        await h.runner.start()
        await until(lambda: "launching" in h.log, "launch begun")
        await h.runner.stop()
        assert "launch:cancelled" in h.log
        assert h.states == ["starting", "stopping", "stopped"]
        assert h.log[-1] == "release:wipe=False"


async def test_stop_interrupts_a_page_load(tmp_path: Path) -> None:
    """A stop while WhatsApp loads (attach pending) stops the browser without waiting for it."""
    async with Harness(tmp_path) as h:
        h.next_driver = lambda d: setattr(d, "gate", asyncio.Event())
        await h.runner.start()
        await until(lambda: bool(h.drivers), "attach begun")
        await h.runner.stop()
        assert h.states == ["starting", "stopping", "stopped"] and "stop:100" in h.log


async def test_stop_when_stopped_is_a_no_op(tmp_path: Path) -> None:
    """stop() on a stopped session returns at once and records nothing."""
    async with Harness(tmp_path) as h:
        await h.runner.stop()
        assert h.transitions == [] and h.state is S.STOPPED


async def test_close_stops_the_browser_and_ends_run(tmp_path: Path) -> None:
    """Daemon shutdown: stopping -> stopped ("daemon shutdown"), and run() returns."""
    async with Harness(tmp_path) as h:
        await h.connected()
        await h.runner.close()
        assert h.states[-2:] == ["stopping", "stopped"]
        assert h.runner.reason == "daemon shutdown"
        assert h.task is not None
        await asyncio.wait({h.task}, timeout=BOUND)
        assert h.task.done() and h.task.exception() is None


async def test_cancelled_runner_stops_its_browser(tmp_path: Path) -> None:
    """Cancelling run() (a TaskGroup tearing down) still stops the browser and releases."""
    async with Harness(tmp_path) as h:
        await h.connected()
        assert h.task is not None
        h.task.cancel()
        await asyncio.gather(h.task, return_exceptions=True)
        assert not h.launcher.alive and "release:wipe=False" in h.log


# -- restart requested ------------------------------------------------------------------------


async def test_connected_to_stopping_to_starting_on_restart(tmp_path: Path) -> None:
    """restart: stopping -> starting with the reason, a new browser, not counted as a death."""
    async with Harness(tmp_path) as h:
        await h.connected()
        await h.runner.restart("config changed")
        await until(lambda: len(h.launcher.handles) == 2, "second browser")
        assert h.states[-2:] == ["stopping", "starting"]
        assert h.reasons[-1] == "config changed"
        assert h.runner.restarts == 0 and not h.runner.backoff.deaths
        assert not h.launcher.handles[0].alive


async def test_restart_of_a_stopped_session_starts_it_once(tmp_path: Path) -> None:
    """restart() on an idle session is a plain start: one browser, not two."""
    async with Harness(tmp_path) as h:
        await h.runner.restart()
        await until(lambda: bool(h.drivers) and h.driver.report is not None, "attach")
        await settle()
        assert len(h.launcher.handles) == 1 and h.states == ["starting"]


# -- deaths and backoff -----------------------------------------------------------------------


async def test_connected_to_backoff_to_starting_after_a_crash(tmp_path: Path) -> None:
    """A dead browser: backoff for backoff_initial, then starting again; the restart is counted."""
    async with Harness(tmp_path) as h:
        await h.connected()
        h.handle.crash(-9)
        await h.reach(S.BACKOFF)
        assert h.runner.reason == "browser exited with status -9; restarting in 1 s"
        assert h.log[-2:] == ["stop:100", "release:wipe=False"]  # sweep + reap even when dead
        await h.clock.advance(0.9)
        assert h.state is S.BACKOFF
        await h.clock.advance(0.1)
        await h.reach(S.STARTING)
        assert h.runner.restarts == 1
        assert h.reasons[-1] == "restart after: browser exited with status -9"


async def test_starting_to_backoff_when_launch_fails(tmp_path: Path) -> None:
    """A launch that raises BrowserError is a death: backoff, and the profile is released."""
    async with Harness(tmp_path) as h:
        h.launcher.fail_next = 1
        await h.runner.start()
        await h.reach(S.BACKOFF)
        assert h.states == ["starting", "backoff"]
        assert "during start" in h.runner.reason and "release:wipe=False" in h.log


async def test_starting_to_backoff_when_the_page_does_not_load(tmp_path: Path) -> None:
    """An attach that fails is a death; the launched browser is stopped."""
    async with Harness(tmp_path) as h:
        h.next_driver = lambda d: setattr(d, "attach_error", RuntimeError("net::ERR_FAILED"))
        await h.runner.start()
        await h.reach(S.BACKOFF)
        assert h.runner.reason.startswith("page did not load (net::ERR_FAILED)")
        assert not h.launcher.alive


async def test_crash_report_is_a_death(tmp_path: Path) -> None:
    """The driver reporting "crash" (Target closed) is handled like a browser exit."""
    async with Harness(tmp_path) as h:
        await h.connected()
        h.push("crash", reason="Target closed")
        await h.reach(S.BACKOFF)
        assert h.runner.reason.startswith("Target closed")
        assert not h.launcher.alive


async def test_backoff_delays_grow_exponentially_to_the_cap(tmp_path: Path) -> None:
    """Consecutive deaths wait 1, 2, 4, then the 5 s cap."""
    cfg: dict[str, Any] = {"restart": {"backoff_max": 5.0, "max_failures": 0}}
    async with Harness(tmp_path, **cfg) as h:
        h.launcher.fail_next = 4
        await h.runner.start()
        delays = []
        for _ in range(4):
            await h.reach(S.BACKOFF)
            delays.append(float(h.runner.reason.rsplit("restarting in ", 1)[1].rstrip(" s")))
            await h.clock.advance(delays[-1])
            await until(lambda: len(h.launcher.requests) == len(delays) + 1, "relaunch")
        assert delays == [1, 2, 4, 5]


async def test_backoff_to_failed_after_n_deaths(tmp_path: Path) -> None:
    """max_failures deaths within failure_window end in failed, naming the count and cause."""
    async with Harness(tmp_path) as h:
        h.launcher.fail_next = 10
        await h.runner.start()
        for delay in (1.0, 2.0):
            await h.reach(S.BACKOFF)
            await h.clock.advance(delay)
        await h.reach(S.FAILED)
        assert h.runner.reason == (
            "3 deaths in 900 s; last: browser exited with status 1 during start"
        )
        assert h.states[-2:] == ["starting", "failed"] and h.runner.restarts == 2
        await h.clock.advance(3600)
        assert len(h.launcher.requests) == 3  # failed stays failed


async def test_deaths_outside_the_window_do_not_fail(tmp_path: Path) -> None:
    """Deaths spread wider than failure_window never reach max_failures."""
    async with Harness(tmp_path, restart={"failure_window": 10.0, "max_failures": 2}) as h:
        await h.connected()
        for _ in range(3):
            h.handle.crash()
            await h.reach(S.BACKOFF)
            await h.clock.advance(11.0)
            await until(lambda: h.driver.report is not None, "attach")
        assert h.state is not S.FAILED and len(h.launcher.handles) == 4


async def test_instant_exits_never_hot_loop(tmp_path: Path) -> None:
    """A browser that exits at once (even with backoff_initial 0) waits at least 0.5 s each time."""
    cfg: dict[str, Any] = {"restart": {"backoff_initial": 0.0, "max_failures": 0}}
    async with Harness(tmp_path, **cfg) as h:
        h.next_driver = lambda d: setattr(d, "attach_error", BrokenPipeError("pipe closed"))
        await h.runner.start()
        for _ in range(4):
            await h.clock.advance(0.49)
        assert len(h.launcher.requests) <= 4  # one launch per 0.5 s at most, not thousands


async def test_consecutive_count_resets_after_a_stable_period(tmp_path: Path) -> None:
    """After stable_after seconds live, the next death waits backoff_initial again."""
    async with Harness(tmp_path, restart={"stable_after": 10.0, "max_failures": 0}) as h:
        await h.connected()
        for expected in ("1 s", "2 s"):
            h.handle.crash()
            await h.reach(S.BACKOFF)
            assert h.runner.reason.endswith(f"restarting in {expected}")
            await h.clock.advance(5.0)
            await until(lambda: h.driver.report is not None, "attach")
            h.push("state", "connected")
            await h.reach(S.CONNECTED)
        await h.clock.advance(11.0)  # stable: the monitor resets the count
        h.handle.crash()
        await h.reach(S.BACKOFF)
        assert h.runner.reason.endswith("restarting in 1 s")


async def test_backoff_to_stopped_on_stop_at_once(tmp_path: Path) -> None:
    """A stop while backing off goes straight to stopped, without waiting out the delay."""
    async with Harness(tmp_path, restart={"backoff_initial": 300.0}) as h:
        h.launcher.fail_next = 1
        await h.runner.start()
        await h.reach(S.BACKOFF)
        await h.runner.stop()
        assert h.states[-1] == "stopped" and h.runner.reason == "stopped on request"
        await h.clock.advance(600)
        assert len(h.launcher.requests) == 1


async def test_backoff_to_starting_on_explicit_start(tmp_path: Path) -> None:
    """An explicit start during a backoff starts now and forgets the deaths."""
    async with Harness(tmp_path, restart={"backoff_initial": 300.0}) as h:
        h.launcher.fail_next = 1
        await h.runner.start()
        await h.reach(S.BACKOFF)
        await h.runner.start()
        await until(lambda: len(h.launcher.handles) == 1, "relaunch")
        assert h.states[-1] == "starting" and not h.runner.backoff.deaths


async def test_backoff_to_starting_on_restart_request(tmp_path: Path) -> None:
    """A restart request during a backoff starts now, with the request's reason."""
    async with Harness(tmp_path, restart={"backoff_initial": 300.0}) as h:
        h.launcher.fail_next = 1
        await h.runner.start()
        await h.reach(S.BACKOFF)
        await h.runner.restart("operator asked")
        await until(lambda: len(h.launcher.handles) == 1, "relaunch")
        assert h.transitions[-1].reason == "operator asked"


async def test_backoff_to_logged_out_on_logout(tmp_path: Path) -> None:
    """A logout during a backoff wipes the profile (no browser runs) and ends logged_out."""
    async with Harness(tmp_path, restart={"backoff_initial": 300.0}) as h:
        h.launcher.fail_next = 1
        await h.runner.start()
        await h.reach(S.BACKOFF)
        await h.runner.logout()
        assert h.states[-1] == "logged_out" and h.log[-1] == "release:wipe=True"


async def test_backoff_to_stopped_on_daemon_shutdown(tmp_path: Path) -> None:
    """close() during a backoff: stopped with "daemon shutdown", run() ends."""
    async with Harness(tmp_path, restart={"backoff_initial": 300.0}) as h:
        h.launcher.fail_next = 1
        await h.runner.start()
        await h.reach(S.BACKOFF)
        await h.runner.close()
        assert h.states[-1] == "stopped" and h.runner.reason == "daemon shutdown"


# -- logout and refusal -----------------------------------------------------------------------


async def test_remote_logout_wipes_only_after_the_browser_exited(tmp_path: Path) -> None:
    """The phone unlinks: detach, stop the browser, THEN wipe; logged_out with the reason."""
    async with Harness(tmp_path) as h:
        await h.connected()
        h.push("logout", reason="unlinked from the phone")
        await h.reach(S.LOGGED_OUT)
        assert h.states[-2:] == ["stopping", "logged_out"]
        assert h.runner.reason == "unlinked from the phone"
        assert h.log.index("stop:100") < h.log.index("release:wipe=True")
        assert "unlink" not in h.log


async def test_requested_logout_unlinks_then_stops_then_wipes(tmp_path: Path) -> None:
    """logout(): the page unlinks the device, the browser stops, the profile is wiped."""
    async with Harness(tmp_path) as h:
        await h.connected()
        await h.runner.logout()
        assert h.state is S.LOGGED_OUT and h.runner.reason == "logged out on request"
        i = h.log.index
        assert i("unlink") < i("detach") < i("stop:100") < i("release:wipe=True")


async def test_logout_of_a_stopped_session_wipes_the_profile(tmp_path: Path) -> None:
    """logout() with no browser: the profile is wiped and the session is logged_out."""
    async with Harness(tmp_path) as h:
        await h.runner.logout()
        assert h.states == ["logged_out"] and h.log == ["release:wipe=True"]


async def test_logout_keeps_the_profile_if_the_browser_survives(tmp_path: Path) -> None:
    """If the browser cannot be stopped, nothing is wiped: failed, saying the profile was kept."""
    async with Harness(tmp_path) as h:
        await h.connected()
        h.handle.stop_error = RuntimeError("pid 100 survived SIGKILL")
        h.push("logout", reason="unlinked")
        await h.reach(S.FAILED)
        assert "the profile was kept" in h.runner.reason
        assert "release:wipe=True" not in h.log and "release:wipe=False" in h.log
        h.handle.crash()  # the test's stand-in for the kernel finally letting go


async def test_logged_out_to_starting_on_start(tmp_path: Path) -> None:
    """A logged-out session starts again (to be linked anew) on an explicit start."""
    async with Harness(tmp_path) as h:
        await h.runner.logout()
        await h.started()
        assert h.states == ["logged_out", "starting"]


async def test_driver_failed_report_stops_and_fails(tmp_path: Path) -> None:
    """WhatsApp refusing the session (TOS_BLOCK): stopping -> failed with the reason, no restart."""
    async with Harness(tmp_path) as h:
        await h.connected()
        h.push("failed", reason="WhatsApp refused this session: TOS_BLOCK")
        await h.reach(S.FAILED)
        assert h.states[-2:] == ["stopping", "failed"] and "TOS_BLOCK" in h.runner.reason
        await h.clock.advance(600)
        assert len(h.launcher.handles) == 1 and not h.launcher.alive


# -- reports, robustness ----------------------------------------------------------------------


async def test_every_report_is_forwarded_and_refreshes_activity(tmp_path: Path) -> None:
    """on_report sees each report with the session name; each one refreshes last_activity."""
    async with Harness(tmp_path) as h:
        await h.connected()
        await h.clock.advance(7.0)
        h.push("message", id="m1", body="hi")
        await until(lambda: len(h.reports) == 4, "report forwarded")
        assert h.reports[-1][0] == "s1" and h.reports[-1][1].data["id"] == "m1"
        assert h.runner.last_activity == h.clock.now


async def test_a_failing_report_consumer_does_not_stop_the_session(tmp_path: Path) -> None:
    """An exception in on_report is logged; the session stays connected."""
    async with Harness(tmp_path) as h:
        await h.connected()
        h.report_error = RuntimeError("disk full")
        h.push("activity")
        await until(lambda: len(h.reports) == 4, "report forwarded")
        await settle()
        assert h.state is S.CONNECTED


async def test_a_runner_bug_ends_failed_with_the_browser_stopped(tmp_path: Path) -> None:
    """An unexpected exception inside the loop: browser stopped, failed, and start works again."""

    def bad_request(name: str, d: Path) -> LaunchRequest:
        raise RuntimeError("bug")

    async with Harness(tmp_path) as h:
        h.runner.build_request = bad_request
        await h.runner.start()
        await h.reach(S.FAILED)
        assert "internal error" in h.runner.reason and "release:wipe=False" in h.log
        h.runner.build_request = request_for
        await h.connected()


async def test_restarts_start_from_the_stored_count(tmp_path: Path) -> None:
    """A runner built with restarts=N (from the database) keeps counting from N."""
    async with Harness(tmp_path) as h:
        h.runner.restarts = 7
        await h.connected()
        h.handle.crash()
        await h.reach(S.BACKOFF)
        await h.clock.advance(1.0)
        await h.reach(S.STARTING)
        assert h.runner.restarts == 8


async def test_per_session_options_reach_the_limits(tmp_path: Path) -> None:
    """SessionOptions overrides (memory, fds, processes) take precedence over [limits]."""
    opts = SessionOptions(memory_mib=50, fds=7, processes=3)
    async with Harness(tmp_path, options=opts) as h:
        lim = limits_for(h.config, h.runner.options)
        assert (lim.memory_mib, lim.fds, lim.processes) == (50, 7, 3)


async def test_start_refused_during_daemon_shutdown(tmp_path: Path) -> None:
    """Once close() began, a start is Busy (the daemon is shutting down)."""
    async with Harness(tmp_path) as h:
        await h.runner.close()
        with pytest.raises(Busy, match="shutting down"):
            await h.runner.start()
