"""The session runner's watchdogs, liveness probe, QR limit and checkpoints, in virtual time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.runner_fakes import Harness, settle, until
from wasupd.config import parse_config
from wasupd.errors import RateLimited
from wasupd.supervision.seams import TreeUsage
from wasupd.supervision.states import SessionState

S = SessionState
MIB = 1 << 20
HEALTH: dict[str, Any] = {
    "health": {"silence_timeout": 5.0, "probe_interval": 2.0, "probe_timeout": 1.0}
}


# -- resource and hang watchdogs --------------------------------------------------------------


async def test_memory_watchdog_restarts_cleanly(tmp_path: Path) -> None:
    """PSS over limits.memory_mib: stopping with the reason, backoff, then a new browser."""
    async with Harness(tmp_path, limits={"memory_mib": 200}) as h:
        await h.connected()
        h.handle.sample = TreeUsage(pss_bytes=300 * MIB, fds=10, processes=3)
        await h.clock.advance(1.0)
        await h.reach(S.BACKOFF)
        assert h.states[-2:] == ["stopping", "backoff"]
        assert h.reasons[-2].startswith("watchdog: memory 300 MiB > limit 200 MiB after a reclaim")
        assert h.log[-2:] == ["stop:100", "release:wipe=False"]  # polite stop, profile kept
        await h.clock.advance(1.0)
        await until(lambda: len(h.launcher.handles) == 2, "new browser")
        assert h.runner.restarts == 1


@pytest.mark.parametrize(
    ("limits", "sample", "reason"),
    [
        ({"fds": 50}, TreeUsage(fds=51, processes=1), "watchdog: 51 open fds > limit 50"),
        ({"processes": 4}, TreeUsage(processes=9), "watchdog: 9 processes > limit 4"),
    ],
)
async def test_fd_and_process_watchdogs_restart(
    tmp_path: Path, limits: dict[str, int], sample: TreeUsage, reason: str
) -> None:
    """Over the fd or process limit, the browser is restarted with the limit in the reason."""
    async with Harness(tmp_path, limits=limits) as h:
        await h.connected()
        h.handle.sample = sample
        await h.clock.advance(1.0)
        await h.reach(S.BACKOFF)
        assert h.reasons[-2] == reason


async def test_cpu_watchdog_needs_a_sustained_excess(tmp_path: Path) -> None:
    """CPU over the limit trips only after several samples in a row, not on one spike."""
    async with Harness(tmp_path, limits={"cpu_percent": 80.0}) as h:
        await h.connected()
        h.handle.sample = TreeUsage(cpu_percent=150.0)
        await h.clock.advance(2.0)
        assert h.state is S.CONNECTED
        await h.clock.advance(1.0)
        await h.reach(S.BACKOFF)
        assert h.reasons[-2] == "watchdog: CPU 150% > limit 80% for 3 samples"


async def test_usage_is_sampled_for_status(tmp_path: Path) -> None:
    """Each check stores the tree's usage on the runner (for top and metrics)."""
    async with Harness(tmp_path) as h:
        await h.connected()
        assert h.runner.usage is None
        await h.clock.advance(1.0)
        await until(lambda: h.runner.usage is not None, "usage sampled")
        assert h.runner.usage == h.handle.sample


async def test_quick_samples_stay_on_the_loop_and_slow_ones_go_to_a_thread(
    tmp_path: Path,
) -> None:
    """A sample the handle calls quick runs inline (no thread hand-off); the others (a /proc
    scan, an exact PSS) run in a worker thread so the loop never stalls on them."""
    async with Harness(tmp_path) as h:
        await h.connected()
        h.handle.quick = True
        await h.clock.advance(1.0)
        await until(lambda: len(h.handle.sampled_in) == 1, "first sample")
        h.handle.quick = False
        await h.clock.advance(1.0)
        await until(lambda: len(h.handle.sampled_in) == 2, "second sample")
        assert h.handle.sampled_in == ["loop", "thread"]


async def test_hang_watchdog_kills_without_devtools_and_restarts(tmp_path: Path) -> None:
    """Two DevTools pings in a row that fail: backoff with the hang reason; the stop skips
    DevTools."""
    async with Harness(tmp_path, browser={"hang_timeout": 30.0}) as h:
        await h.connected()
        h.handle.hung = True
        await h.clock.advance(1.0)
        await h.clock.advance(1.0)
        await h.reach(S.BACKOFF)
        assert h.runner.reason.startswith(
            "watchdog: DevTools did not answer within 30 s, nor within 60 s after;"
        )
        assert "stop:100:nodevtools" in h.log
        await h.clock.advance(1.0)
        await until(lambda: len(h.launcher.handles) == 2, "restarted")


async def test_one_missed_ping_is_only_a_suspicion_until_the_next(tmp_path: Path) -> None:
    """On a starved host a healthy browser can miss one ping: no restart; an answer in
    between clears it, so misses must come two in a row to trip."""
    async with Harness(tmp_path, browser={"hang_timeout": 30.0}) as h:
        await h.connected()
        for hung in (True, False, True):
            h.handle.hung = hung
            checks = len(h.handle.sampled_in)
            await h.clock.advance(1.0)
            await until(lambda n=checks: len(h.handle.sampled_in) > n, "a check")
        assert h.state is S.CONNECTED and len(h.launcher.handles) == 1
        await h.clock.advance(1.0)
        await h.reach(S.BACKOFF)
        assert "nor within 60 s after" in h.runner.reason


async def test_new_limits_apply_live_after_update_config(tmp_path: Path) -> None:
    """update_config (SIGHUP) lowers a limit; the next check trips on it without a restart."""
    async with Harness(tmp_path) as h:
        await h.connected()
        await h.clock.advance(1.0)
        assert h.state is S.CONNECTED
        h.runner.update_config(parse_config({"limits": {"check_interval": 1.0, "memory_mib": 50}}))
        await h.clock.advance(1.0)
        await h.reach(S.BACKOFF)
        assert "limit 50 MiB" in h.reasons[-2]


async def test_per_session_memory_limit_trips(tmp_path: Path) -> None:
    """A session's own memory_mib override is what the watchdog enforces."""
    from wasupd.supervision.seams import SessionOptions

    async with Harness(tmp_path, options=SessionOptions(memory_mib=80)) as h:
        await h.connected()
        await h.clock.advance(1.0)
        await h.reach(S.BACKOFF)
        assert h.reasons[-2].startswith("watchdog: memory 100 MiB > limit 80 MiB after a reclaim")


# -- liveness ---------------------------------------------------------------------------------


async def test_connected_to_degraded_to_backoff_when_the_reload_does_not_help(
    tmp_path: Path,
) -> None:
    """Silent + failing probe: degraded and a page reload; failing again: the browser restarts."""
    async with Harness(tmp_path, **HEALTH) as h:
        await h.connected()
        h.driver.probe_error = RuntimeError("socket not CONNECTED")
        await h.clock.advance(6.0)
        await h.reach(S.DEGRADED)
        assert h.runner.reason == "liveness probe failed: socket not CONNECTED"
        assert h.driver.reloads == 1 and h.driver.probes == 1
        await h.clock.advance(2.0)
        await h.reach(S.BACKOFF)
        assert h.reasons[-2] == "liveness probe failed: socket not CONNECTED after a page reload"
        assert h.driver.probes == 2


async def test_degraded_to_connected_when_the_probe_answers(tmp_path: Path) -> None:
    """A probe that answers after the reload brings the session back to connected."""
    async with Harness(tmp_path, **HEALTH) as h:
        await h.connected()
        h.driver.probe_error = RuntimeError("no answer")
        await h.clock.advance(6.0)
        await h.reach(S.DEGRADED)
        h.driver.probe_error = None
        await h.clock.advance(2.0)
        await h.reach(S.CONNECTED)
        assert h.runner.reason == "liveness probe answered" and len(h.launcher.handles) == 1


async def degraded_then_page_says_connected(h: Harness) -> None:
    """Connected, a silent page fails its probe (degraded, reloaded), then the page reports
    connected again while its reload's check is still pending."""
    await h.connected()
    h.driver.probe_error = RuntimeError("no answer")
    await h.clock.advance(6.0)
    await h.reach(S.DEGRADED)
    h.push("state", "connected")
    await h.reach(S.CONNECTED)


async def test_degraded_to_connected_when_the_page_reports_connected(tmp_path: Path) -> None:
    """The driver reporting connected again (after the reload) ends degraded at once; the
    reload's own check still runs, and a probe that answers keeps the session connected."""
    async with Harness(tmp_path, **HEALTH) as h:
        await degraded_then_page_says_connected(h)
        h.driver.probe_error = None
        await h.clock.advance(3.0)
        assert h.state is S.CONNECTED and h.driver.probes == 2
        assert len(h.launcher.handles) == 1


async def test_page_that_says_connected_but_still_fails_the_probe_is_restarted(
    tmp_path: Path,
) -> None:
    """A reload after which the page claims connected but the server round trip still fails
    is the silent death the probe exists for: the browser restarts, not another reload."""
    async with Harness(tmp_path, **HEALTH) as h:
        await degraded_then_page_says_connected(h)
        await h.clock.advance(2.0)  # the reload's check is due probe_interval after the first
        await h.reach(S.BACKOFF)
        assert h.reasons[-4:] == [
            "liveness probe failed: no answer",
            "WhatsApp is connected",
            "liveness probe failed: no answer after a page reload",
            "liveness probe failed: no answer after a page reload; restarting in 1 s",
        ]
        assert h.driver.reloads == 1


async def test_no_probe_while_the_page_reports_activity(tmp_path: Path) -> None:
    """A page that keeps reporting is never probed."""
    async with Harness(tmp_path, **HEALTH) as h:
        await h.connected()
        for _ in range(10):
            h.push("activity")
            await h.clock.advance(1.0)
        assert h.driver.probes == 0


async def test_probes_are_spaced_by_probe_interval(tmp_path: Path) -> None:
    """A silent page that answers is probed at most once per probe_interval."""
    cfg: dict[str, Any] = {
        "health": {"silence_timeout": 0.5, "probe_interval": 4.0, "probe_timeout": 1.0}
    }
    async with Harness(tmp_path, **cfg) as h:
        await h.connected()
        for _ in range(8):
            await h.clock.advance(1.0)
        assert h.driver.probes == 2 and h.state is S.CONNECTED


# -- QR generation limit ----------------------------------------------------------------------


async def test_qr_report_enters_qr_and_offers_the_code(tmp_path: Path) -> None:
    """A qr report moves starting -> qr and makes the payload available (wait_qr)."""
    async with Harness(tmp_path) as h:
        await h.started()
        h.push("qr", payload="2@abc", rotation=0, expires_at=0)
        qr = await h.runner.wait_qr(timeout=5)
        assert qr is not None and qr["payload"] == "2@abc" and h.states == ["starting", "qr"]


async def test_qr_generation_limit_fails_and_refuses_start(tmp_path: Path) -> None:
    """A generation past qr.max_per_hour: failed with the retry time, never shown; a start is
    RateLimited."""
    async with Harness(tmp_path, qr={"max_per_hour": 2}) as h:
        await h.started()
        for i in range(3):
            h.push("qr", payload=f"p{i}", rotation=0, expires_at=0)
        await h.reach(S.FAILED)
        assert h.states[-2:] == ["stopping", "failed"] and not h.launcher.alive
        assert h.runner.reason == (
            "QR limit: 2 generations in the last hour; try again after 23:30 UTC"
        )
        shown = [r.data["payload"] for _, r in h.reports if r.kind == "qr"]
        assert shown == ["p0", "p1"]  # the refused one never reached events or the CLI
        with pytest.raises(RateLimited, match="QR limit"):
            await h.runner.start()
        await h.clock.advance(3600)
        await h.started()  # an hour later the start is allowed again


async def test_qr_rotations_do_not_count_as_generations(tmp_path: Path) -> None:
    """Rotations (rotation > 0) of one generation never trip the hourly limit."""
    async with Harness(tmp_path, qr={"max_per_hour": 1}) as h:
        await h.started()
        for r in range(5):
            h.push("qr", payload=f"p{r}", rotation=r, expires_at=0)
        await until(lambda: len(h.reports) == 5, "reports")
        await settle()
        assert h.state is S.QR


async def test_qr_generations_count_across_browser_restarts(tmp_path: Path) -> None:
    """Generations of earlier browsers of the session count toward the same hour."""
    async with Harness(tmp_path, qr={"max_per_hour": 2}) as h:
        for _ in range(2):
            await h.started()
            h.push("qr", payload="p", rotation=0, expires_at=0)
            await h.reach(S.QR)
            await h.runner.stop()
        await h.started()
        h.push("qr", payload="p", rotation=0, expires_at=0)
        await h.reach(S.FAILED)
        assert h.runner.reason.startswith("QR limit: 2 generations")


# -- checkpoints ------------------------------------------------------------------------------


async def test_checkpoint_every_interval_while_live(tmp_path: Path) -> None:
    """profiles.checkpoint() runs once per checkpoint_interval while the session is live."""
    async with Harness(tmp_path, profiles={"checkpoint_interval": 10.0}) as h:
        await h.started()
        h.push("state", "connected")  # already linked: no linking checkpoint
        await h.reach(S.CONNECTED)
        for _ in range(25):
            await h.clock.advance(1.0)
        assert h.log.count("checkpoint") == 2


async def test_checkpoint_once_right_after_linking(tmp_path: Path) -> None:
    """The first connected after a QR seals the new link at the next check, not an interval later."""
    async with Harness(tmp_path, profiles={"checkpoint_interval": 900.0}) as h:
        await h.connected()  # qr -> syncing -> connected: a link
        await h.clock.advance(1.0)
        await until(lambda: "checkpoint" in h.log, "linking checkpoint")
        await h.clock.advance(5.0)
        assert h.log.count("checkpoint") == 1


async def test_no_linking_checkpoint_when_already_linked(tmp_path: Path) -> None:
    """A start that goes straight to connected (already linked) takes no early checkpoint."""
    async with Harness(tmp_path, profiles={"checkpoint_interval": 900.0}) as h:
        await h.started()
        h.push("state", "syncing")
        h.push("state", "connected")
        await h.reach(S.CONNECTED)
        await h.clock.advance(5.0)
        assert "checkpoint" not in h.log


async def test_checkpoint_errors_are_not_fatal(tmp_path: Path) -> None:
    """A failing checkpoint is logged; the session stays connected."""
    async with Harness(tmp_path, profiles={"checkpoint_interval": 2.0}) as h:
        h.profiles.checkpoint_error = OSError(28, "No space left on device")
        await h.connected()
        for _ in range(5):
            await h.clock.advance(1.0)
        assert h.log.count("checkpoint") >= 2 and h.state is S.CONNECTED


async def test_a_broken_check_does_not_end_the_watchdogs(tmp_path: Path) -> None:
    """A usage sample that raises is logged; the next checks still run and can trip."""
    async with Harness(tmp_path, limits={"memory_mib": 200}) as h:
        await h.connected()
        good = h.handle.usage
        calls: list[int] = []

        def flaky() -> TreeUsage:
            calls.append(1)
            if len(calls) == 1:
                raise OSError("/proc vanished")
            return TreeUsage(pss_bytes=300 * MIB)

        h.handle.usage = flaky  # type: ignore[method-assign]
        await h.clock.advance(1.0)
        assert h.state is S.CONNECTED
        await h.clock.advance(1.0)
        await h.reach(S.BACKOFF)
        assert len(calls) >= 2 and good is not None  # (the reclaim before the trip samples too)
