"""The monitor's reclaim-before-restart rule, with fake browsers in virtual time."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.unit.runner_fakes import Harness
from wasupd.config import parse_config
from wasupd.errors import BrowserError, ConfigError
from wasupd.supervision.monitor import limits_for
from wasupd.supervision.seams import SessionOptions, TreeUsage
from wasupd.supervision.states import SessionState

S = SessionState
MIB = 1 << 20
LIMITS = {"memory_mib": 400, "memory_soft_mib": 300, "reclaim_interval": 60.0}


def pss(mib: int) -> TreeUsage:
    return TreeUsage(pss_bytes=mib * MIB, fds=10, processes=3)


def reclaim_reports(h: Harness) -> list[dict[str, object]]:
    return [r.data for _, r in h.reports if r.kind == "reclaim"]


async def test_over_the_soft_limit_a_reclaim_runs_and_the_browser_stays(tmp_path: Path) -> None:
    """PSS between the soft and hard limits: one reclaim, reported with before/after, no restart."""
    async with Harness(tmp_path, limits=LIMITS) as h:
        await h.connected()
        h.handle.sample, h.handle.reclaim_to = pss(350), pss(250)
        with capture_logs() as logs:
            await h.clock.advance(1.0)
        assert h.handle.reclaims == [350 * MIB]
        assert h.runner.usage == pss(250)  # status shows the sample after the reclaim
        [data] = reclaim_reports(h)
        assert (data["before_mib"], data["after_mib"], data["soft_mib"]) == (350, 250, 300)
        assert any(e["event"] == "memory_reclaimed" for e in logs)
        await h.clock.advance(5.0)
        assert h.state is S.CONNECTED and len(h.launcher.handles) == 1


async def test_under_the_soft_limit_nothing_is_reclaimed(tmp_path: Path) -> None:
    """A page at rest below the soft limit never gets a reclaim."""
    async with Harness(tmp_path, limits=LIMITS) as h:
        await h.connected()
        h.handle.sample = pss(300)  # at the limit is not over it
        await h.clock.advance(5.0)
        assert h.handle.reclaims == []


async def test_a_page_that_stays_over_gets_one_reclaim_per_interval(tmp_path: Path) -> None:
    """Over the soft limit after a reclaim (under the hard one): the next only reclaim_interval
    later, not at every sample."""
    async with Harness(tmp_path, limits=LIMITS) as h:
        await h.connected()
        h.handle.sample = pss(350)  # the reclaim frees nothing
        await h.clock.advance(1.0)
        await h.clock.advance(58.0)
        assert len(h.handle.reclaims) == 1
        await h.clock.advance(2.0)
        assert len(h.handle.reclaims) == 2
        assert h.state is S.CONNECTED


async def test_over_the_hard_limit_a_reclaim_that_brings_it_under_avoids_the_restart(
    tmp_path: Path,
) -> None:
    """PSS over memory_mib is first reclaimed; under it afterwards, the browser stays."""
    async with Harness(tmp_path, limits=LIMITS) as h:
        await h.connected()
        h.handle.sample, h.handle.reclaim_to = pss(450), pss(320)
        await h.clock.advance(3.0)
        assert h.handle.reclaims == [450 * MIB]
        assert h.state is S.CONNECTED and len(h.launcher.handles) == 1


async def test_a_reclaim_that_does_not_bring_it_under_the_hard_limit_restarts(
    tmp_path: Path,
) -> None:
    """Still over memory_mib after the reclaim: a clean restart whose reason says the reclaim
    ran and what it freed."""
    async with Harness(tmp_path, limits=LIMITS) as h:
        await h.connected()
        h.handle.sample, h.handle.reclaim_to = pss(500), pss(480)
        await h.clock.advance(1.0)
        await h.reach(S.BACKOFF)
        assert h.handle.reclaims == [500 * MIB]
        assert h.reasons[-2] == (
            "watchdog: memory 480 MiB > limit 400 MiB after a reclaim 0 s ago (freed 20 MiB)"
        )
        assert h.log[-2:] == ["stop:100", "release:wipe=False"]


async def test_growth_past_the_hard_limit_within_the_interval_restarts_at_once(
    tmp_path: Path,
) -> None:
    """A reclaim kept it under; it grew past memory_mib before the next may run: restart."""
    async with Harness(tmp_path, limits=LIMITS) as h:
        await h.connected()
        h.handle.sample, h.handle.reclaim_to = pss(350), pss(310)
        await h.clock.advance(1.0)
        await h.clock.advance(5.0)
        h.handle.sample = pss(420)
        await h.clock.advance(1.0)
        await h.reach(S.BACKOFF)
        assert len(h.handle.reclaims) == 1
        assert "limit 400 MiB after a reclaim 6 s ago (freed 40 MiB)" in h.reasons[-2]


async def test_a_failed_reclaim_is_logged_and_the_hard_limit_still_applies(
    tmp_path: Path,
) -> None:
    """A reclaim DevTools refuses: logged, and a tree over memory_mib is restarted as before."""
    async with Harness(tmp_path, limits=LIMITS) as h:
        await h.connected()
        h.handle.sample = pss(450)
        h.handle.reclaim_error = BrowserError("memory reclaim did not finish within 30 s")
        with capture_logs() as logs:
            await h.clock.advance(1.0)
            await h.reach(S.BACKOFF)
        failed = [e for e in logs if e["event"] == "memory_reclaim_failed"]
        assert failed and "within 30 s" in str(failed[0]["error"])
        assert h.reasons[-2] == (
            "watchdog: memory 450 MiB > limit 400 MiB after a failed reclaim 0 s ago"
        )
        assert reclaim_reports(h) == []


async def test_reclaim_settings_apply_live(tmp_path: Path) -> None:
    """update_config (SIGHUP) lowers memory_soft_mib: the next sample reclaims."""
    async with Harness(tmp_path, limits=LIMITS) as h:
        await h.connected()
        h.handle.sample = pss(250)
        await h.clock.advance(2.0)
        assert h.handle.reclaims == []
        h.runner.update_config(
            parse_config({"limits": {**LIMITS, "check_interval": 1.0, "memory_soft_mib": 200}})
        )
        await h.clock.advance(1.0)
        assert h.handle.reclaims == [250 * MIB]


def test_the_soft_limit_defaults_to_a_share_of_the_hard_one_and_obeys_overrides() -> None:
    """0 means 80% of memory_mib (also of a session's own memory_mib); a session's own
    memory_soft_mib wins; the soft limit never exceeds the hard one; no limits, no reclaim."""
    cfg = parse_config({"limits": {"memory_mib": 1000}})
    assert limits_for(cfg, SessionOptions()).memory_soft_mib == 800
    assert limits_for(cfg, SessionOptions(memory_mib=500)).memory_soft_mib == 400
    assert limits_for(cfg, SessionOptions(memory_soft_mib=600)).memory_soft_mib == 600
    assert (
        limits_for(cfg, SessionOptions(memory_mib=500, memory_soft_mib=600)).memory_soft_mib == 500
    )
    off = parse_config({"limits": {"memory_mib": 0}})
    assert limits_for(off, SessionOptions()).memory_soft_mib == 0


def test_a_soft_limit_above_the_hard_one_is_refused_naming_the_key() -> None:
    """limits.memory_soft_mib > limits.memory_mib is a config error that says what to do."""
    with pytest.raises(ConfigError, match=r"limits.memory_soft_mib: must not exceed") as info:
        parse_config({"limits": {"memory_mib": 500, "memory_soft_mib": 600}})
    assert info.value.data["key"] == "limits.memory_soft_mib"
