"""The monitor of one running browser: watchdogs, the liveness probe and checkpoints.

Every `limits.check_interval` it samples the tree's resources (a tree over the soft memory
limit first gets a reclaim over DevTools; only one still over the hard limit trips), pings
DevTools (the hang watchdog), probes a silent connected page (degrade + reload, then restart
on a second failure) and seals the live profile when a checkpoint is due. A tripped check is
posted to the runner as an `End` and ends the monitor; the runner decides what follows. A check
that itself fails is logged and the others go on (a broken check must not silently end them
all).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Protocol

from wasupd.config import Config
from wasupd.errors import BrowserError
from wasupd.supervision.rules import LIVE, End
from wasupd.supervision.seams import (
    BrowserHandle,
    Clock,
    DriverReport,
    PageDriver,
    ProfileHooks,
    SessionOptions,
    TreeUsage,
)
from wasupd.supervision.states import SessionState
from wasupd.watchdogs.policy import (
    MIB,
    HangPolicy,
    Limits,
    LivenessPolicy,
    ResourcePolicy,
    hang_reason,
    soft_limit_mib,
)

S = SessionState
DETACH_TIMEOUT = 5.0  # a driver's detach/reload is page work: seconds, not minutes
RECLAIM_TIMEOUT = 30.0  # a forced GC of a heap of several GiB takes seconds; a hung one, forever


class Watched(Protocol):
    """What the monitor reads from its session and does to it (the runner implements it)."""

    last_activity: float | None  # monotonic time of the page's last sign of life
    usage: TreeUsage | None  # the latest sample, for status and metrics

    @property
    def config(self) -> Config: ...

    @property
    def options(self) -> SessionOptions: ...

    @property
    def state(self) -> SessionState: ...

    @property
    def driver(self) -> PageDriver | None: ...

    def note_live(self) -> None:
        """A check found the browser running: the backoff learns how long it has been stable."""

    async def reclaimed(self, report: DriverReport) -> None:
        """A memory reclaim ran (a `reclaim` report): published on the event bus."""

    async def set_state(self, new: SessionState, reason: str) -> None:
        """Record a state change (checked against the transition table)."""


def limits_for(config: Config, options: SessionOptions) -> Limits:
    """The resource limits of one session: its own overrides, else `[limits]`."""
    lim, o = config.limits, options
    memory = o.memory_mib if o.memory_mib is not None else lim.memory_mib
    soft = o.memory_soft_mib if o.memory_soft_mib is not None else lim.memory_soft_mib
    return Limits(
        memory_mib=memory,
        memory_soft_mib=soft_limit_mib(soft, memory),
        reclaim_interval=lim.reclaim_interval,
        fds=o.fds if o.fds is not None else lim.fds,
        processes=o.processes if o.processes is not None else lim.processes,
        cpu_percent=lim.cpu_percent,
    )


class Monitor:
    """Watches one browser for its session; `run()` lives as long as the browser is watched."""

    def __init__(
        self,
        session: Watched,
        handle: BrowserHandle,
        *,
        clock: Clock,
        profiles: ProfileHooks,
        post: Callable[[End], None],
        log: Any,
    ) -> None:
        self.session, self.handle, self.clock, self.profiles = session, handle, clock, profiles
        self.post, self._log = post, log
        self.liveness = LivenessPolicy()
        self.hang = HangPolicy()
        self.checkpoint_due = False  # freshly linked: seal the new credentials at the next check

    async def run(self) -> None:
        """Check every `limits.check_interval` until a check trips (posted, then return)."""
        policy = ResourcePolicy(self._limits())
        next_checkpoint = self.clock.monotonic() + self.session.config.profiles.checkpoint_interval
        while True:
            await self.clock.sleep(self.session.config.limits.check_interval)
            try:
                end = await self.check_browser(policy) or await self.check_liveness()
            except Exception:  # a broken check must not silently end all the others
                self._log.exception("watchdog_check_failed")
                continue
            if end is not None:
                self._log.warning("watchdog_tripped", reason=end.reason)
                self.post(end)
                return
            next_checkpoint = await self.maybe_checkpoint(next_checkpoint)

    def _limits(self) -> Limits:
        return limits_for(self.session.config, self.session.options)

    async def check_browser(self, policy: ResourcePolicy) -> End | None:
        """Resource limits, then the hang watchdog (a DevTools round trip)."""
        policy.limits = self._limits()
        # Most samples read a few small /proc files: inline, they cost less than a thread
        # hand-off would (with 50 sessions the hand-offs were a third of the daemon's idle CPU).
        handle = self.handle
        usage = handle.usage() if handle.usage_is_quick() else await asyncio.to_thread(handle.usage)
        if self.session.state in LIVE:
            self.session.note_live()
        usage = await self.maybe_reclaim(policy, usage)
        self.session.usage = usage
        if (why := policy.check(usage, self.clock.monotonic())) is not None:
            return End("trip", why)
        hang = self.session.config.browser.hang_timeout
        wait = self.hang.timeout(hang)
        try:
            # The handle bounds the ping itself; the outer bound is for a handle that does not.
            async with asyncio.timeout(wait + DETACH_TIMEOUT):
                await handle.ping(wait)
        except (BrowserError, TimeoutError):
            if self.hang.missed():
                return End("death", f"{hang_reason(hang)}, nor within {wait:g} s after", hung=True)
            self._log.warning("hang_suspected", timeout=hang, next_timeout=self.hang.timeout(hang))
            return None
        self.hang.answered()
        return None

    async def maybe_reclaim(self, policy: ResourcePolicy, usage: TreeUsage) -> TreeUsage:
        """Reclaim when over the soft limit (at most once per reclaim_interval); the sample the
        hard limit is then judged on. A reclaim that fails is logged and the old sample stands."""
        now, lim = self.clock.monotonic(), policy.limits
        if not policy.reclaim.due(now, usage, lim):
            return usage
        t0 = self.clock.monotonic()
        try:
            async with asyncio.timeout(RECLAIM_TIMEOUT + DETACH_TIMEOUT):
                after = await self.handle.reclaim(RECLAIM_TIMEOUT)
        except (BrowserError, TimeoutError) as exc:
            policy.reclaim.done(now, usage, None)
            self._log.warning("memory_reclaim_failed", error=str(exc) or type(exc).__name__)
            return usage
        policy.reclaim.done(now, usage, after)
        data = {
            "before_mib": usage.pss_bytes // MIB,
            "after_mib": after.pss_bytes // MIB,
            "soft_mib": lim.memory_soft_mib,
            "limit_mib": lim.memory_mib,
            "duration": round(self.clock.monotonic() - t0, 3),
        }
        self._log.info("memory_reclaimed", **data)
        await self.session.reclaimed(DriverReport(kind="reclaim", data=data))
        return after

    async def check_liveness(self) -> End | None:
        """Probe a silent connected page; degrade + reload, then restart on a second failure."""
        session, health = self.session, self.session.config.health
        driver = session.driver
        if driver is None or session.state not in (S.CONNECTED, S.DEGRADED):
            return None
        if not self.liveness.due(self.clock.monotonic(), session.last_activity, health):
            return None
        why = await self._probe(driver, health.probe_timeout)
        verdict = self.liveness.probed(self.clock.monotonic(), ok=not why)
        if verdict == "ok":
            session.last_activity = self.clock.monotonic()
            if session.state is S.DEGRADED:
                await session.set_state(S.CONNECTED, "liveness probe answered")
            return None
        if verdict == "restart":
            return End("trip", f"{why} after a page reload")
        await self._degrade_and_reload(driver, why, health.probe_timeout)
        return None

    async def _probe(self, driver: PageDriver, timeout: float) -> str:
        """ "" when the page answered the probe, else why not."""
        try:
            async with asyncio.timeout(timeout + DETACH_TIMEOUT):
                await driver.probe(timeout)
        except Exception as exc:
            return f"liveness probe failed: {exc or type(exc).__name__}"
        return ""

    async def _degrade_and_reload(self, driver: PageDriver, why: str, timeout: float) -> None:
        self._log.warning("liveness_failed", reason=why, action="reload")
        if self.session.state is S.CONNECTED:
            await self.session.set_state(S.DEGRADED, why)
        with contextlib.suppress(Exception):  # the next probe tells whether the reload helped
            async with asyncio.timeout(timeout + DETACH_TIMEOUT):
                await driver.reload()

    async def maybe_checkpoint(self, next_at: float) -> float:
        """Seal the live profile every checkpoint_interval while live, and once after linking."""
        now = self.clock.monotonic()
        if self.session.state not in LIVE or not (self.checkpoint_due or now >= next_at):
            return next_at
        why = "linked" if self.checkpoint_due else "interval"
        self.checkpoint_due = False
        try:
            await self.profiles.checkpoint()
            self._log.info("checkpoint_taken", why=why)
        except Exception as exc:  # the previous archive stays valid: log, retry next interval
            self._log.warning("checkpoint_failed", why=why, error=str(exc))
        return now + self.session.config.profiles.checkpoint_interval
