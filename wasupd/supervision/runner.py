"""One session's life: start -> watch -> restart with backoff / stop / log out / fail.

The runner talks to the world only through the seams (`Launcher`, `BrowserHandle`,
`PageDriver`, `ProfileHooks`, `Clock`), so every rule here is unit tested with fakes.
Requests (`start`, `stop`, `restart`, `logout`, `close`) record an `Intent` and ring the
`Doorbell`; `run()` owns every transition, which goes through `states.check_transition` and is
handed to `on_transition` (stored with its reason, published as an event). The last request
wins, except that nothing overrides `close`. One browser's life (launch, attach, watch, stop)
is `wasupd.supervision.life`; what a page report means is `rules`; the watchdogs are `monitor`.

Guarantees: a stop we asked for is never counted as a death; the profile is wiped only after
the browser has exited; whatever happens (cancellation included) a launched browser is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from wasupd.config import Config
from wasupd.errors import Busy, InvalidState, RateLimited
from wasupd.errors import Timeout as TimedOut
from wasupd.supervision.backoff import Backoff
from wasupd.supervision.gate import StartGate
from wasupd.supervision.intent import Intent
from wasupd.supervision.interrupt import Doorbell
from wasupd.supervision.life import BrowserLife
from wasupd.supervision.rules import LIVE, End
from wasupd.supervision.seams import (
    BrowserHandle,
    Clock,
    DriverReport,
    Launcher,
    LaunchRequest,
    ProfileHooks,
    SessionDriver,
    SessionOptions,
    TreeUsage,
)
from wasupd.supervision.states import IDLE_STATES, STARTABLE_STATES, SessionState, check_transition
from wasupd.watchdogs.policy import QrLimiter

__all__ = ["SessionOptions", "SessionRunner", "Transition"]  # SessionOptions: seams, re-exported

log = structlog.get_logger("wasupd.runner")
S = SessionState
START_ACK_TIMEOUT = 10.0  # start() returns once the loop took the request


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """A state change, handed to `on_transition`."""

    session: str
    at: float
    from_state: SessionState
    to_state: SessionState
    reason: str


class SessionRunner(BrowserLife):
    """Supervises one session; `run()` is its task in the manager's TaskGroup."""

    def __init__(
        self,
        name: str,
        *,
        config: Config,
        options: SessionOptions,
        launcher: Launcher,
        driver_factory: Callable[[], SessionDriver],
        profiles: ProfileHooks,
        clock: Clock,
        on_transition: Callable[[Transition], Awaitable[None]],
        on_report: Callable[[str, DriverReport], Awaitable[None]],
        build_request: Callable[[str, Path], LaunchRequest],
        initial_state: SessionState = SessionState.STOPPED,
        restarts: int = 0,
        start_gate: StartGate | None = None,
    ) -> None:
        self.name, self.config, self.options = name, config, options
        self.launcher, self.driver_factory, self.profiles = launcher, driver_factory, profiles
        self.clock, self.build_request = clock, build_request
        # Shared by every session: at most so many browsers launching and loading at once.
        self.start_gate = start_gate or StartGate(lambda: 1 << 30)
        self.on_transition, self.on_report = on_transition, on_report
        self.state, self.reason, self.restarts = initial_state, "", restarts
        self._published = initial_state  # `state` once its transition is recorded
        self.pid: int | None = None
        self.usage: TreeUsage | None = None
        self.started_at: float | None = None  # wall clock
        self.last_activity: float | None = None  # monotonic
        self.qr: dict[str, Any] | None = None
        self.code: dict[str, Any] | None = None
        self.driver: SessionDriver | None = None
        self.handle: BrowserHandle | None = None
        self.backoff = Backoff(config.restart)
        self.qr_limit = QrLimiter()
        self.intent = Intent()
        self.bell = Doorbell()  # rung by every request: cuts a launch, an attach, a backoff short
        self._log = log.bind(session=name)
        self._changed = asyncio.Condition()
        self._running = False  # run() is executing
        self._start_count = 0
        self._live_since: float | None = None
        BrowserLife.__init__(self)

    # -- requests --------------------------------------------------------------------------

    async def start(self) -> None:
        """Request a start; `InvalidState` unless startable, `RateLimited` under the QR limit.

        Returns once the loop has taken the request (the session is `starting` or beyond).
        """
        if self.intent.closing:
            raise Busy("the daemon is shutting down", session=self.name)
        if self.state not in STARTABLE_STATES:
            raise InvalidState(
                f"session {self.name!r} is {self.state.value}; it cannot be started now",
                session=self.name,
                state=self.state.value,
            )
        if self.qr_limit.blocked(self.clock.time()):
            raise RateLimited(self.qr_limit.reason(), session=self.name)
        self.backoff.reset()
        self.intent.request("run")
        seen = self._start_count
        self.bell.ring()  # a backoff sleep ends now
        try:
            async with asyncio.timeout(START_ACK_TIMEOUT), self._changed:
                await self._changed.wait_for(
                    lambda: self._start_count > seen or not self.intent.wants_run
                )
        except TimeoutError:
            raise TimedOut(
                f"session {self.name!r} did not start within {START_ACK_TIMEOUT:g} s",
                session=self.name,
            ) from None

    async def stop(self) -> None:
        """Stop the browser and wait until the session is idle (bounded)."""
        if self.state in IDLE_STATES:
            self.intent.settle()
            return
        self._request(lambda: self.intent.request("stop"))
        await self.wait_for(IDLE_STATES, timeout=self._stop_bound())

    async def restart(self, reason: str = "restart requested") -> None:
        """Stop the browser (not counted as a death) and start it again; a backoff ends now."""
        if self.state in IDLE_STATES:
            await self.start()
            return
        self._request(lambda: self.intent.request("restart", reason))

    async def logout(self) -> None:
        """Unlink this device in the page, stop the browser, then wipe the profile: `logged_out`."""
        if self.state in IDLE_STATES:  # no browser: nothing to unlink, only the profile to wipe
            self.intent.settle()
            await self.profiles.release(wipe=True)
            await self.set_state(S.LOGGED_OUT, "logged out on request")
            return
        self._request(lambda: self.intent.request("logout"))
        await self.wait_for(IDLE_STATES, timeout=self._stop_bound())

    async def close(self) -> None:
        """Daemon shutdown: stop the browser (bounded), then end `run()`."""
        self._request(lambda: self.intent.request("close"))
        if not self._running:  # run() never started or already ended: nothing to wait for
            return
        with contextlib.suppress(TimedOut):
            await self.wait_for(IDLE_STATES, timeout=self._stop_bound())

    def update_config(self, config: Config) -> None:
        """SIGHUP: limits, restart, health, QR and checkpoint settings apply from the next check."""
        self.config = config
        self.backoff.config = config.restart

    async def wait_for(self, states: Collection[SessionState], timeout: float) -> SessionState:
        """Wait until the state is one of `states`; `Timeout` after `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self._published in states)
        except TimeoutError:
            raise TimedOut(
                f"session {self.name!r} still {self.state.value} after {timeout:g} s",
                session=self.name,
            ) from None
        return self.state

    async def wait_qr(self, timeout: float) -> dict[str, Any] | None:
        """Wait until a QR is on offer (or the session leaves starting/qr); the QR or None."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(
                    lambda: self.qr is not None or self._published not in (S.STARTING, S.QR)
                )
        return self.qr if self._published is S.QR else None

    def _request(self, record: Callable[[], None]) -> None:
        """Record a command, then wake the watch of the browser and whatever the loop waits on."""
        record()
        self.wake_watch()
        self.bell.ring()

    def _stop_bound(self) -> float:
        return self.config.browser.stop_timeout * 2 + 30

    # -- transitions -----------------------------------------------------------------------

    async def set_state(self, new: SessionState, reason: str) -> None:
        """The one place a state changes: checked, recorded, published, waiters woken."""
        old = self.state
        if old is new and reason == self.reason:
            return
        if old is not new:
            check_transition(self.name, old, new)
        self.state, self.reason = new, reason
        if new in LIVE and self._live_since is None:
            self._live_since = self.clock.monotonic()
        try:
            if old is not new:
                # Shielded: a transition that happened is recorded even if this task is cancelled.
                await asyncio.shield(self.on_transition(self._transition(old, new, reason)))
        except Exception as exc:
            # The store could not record it (a database that stopped answering): the browser
            # is supervised all the same, and the next transition records the state again.
            self._log.warning(
                "transition_not_recorded", from_state=old.value, to_state=new.value, error=str(exc)
            )
        finally:
            # Waiters see a state only once it is recorded (stop() returns after the record),
            # or once recording it failed: they are woken either way.
            self._published = new
            if new is S.STARTING:
                self._start_count += 1
            await self.notify()

    def _transition(self, old: SessionState, new: SessionState, reason: str) -> Transition:
        at = self.clock.time()
        return Transition(session=self.name, at=at, from_state=old, to_state=new, reason=reason)

    async def notify(self) -> None:
        """Wake `wait_for` / `wait_qr` / `start` waiters (a state or a QR changed)."""
        async with self._changed:
            self._changed.notify_all()

    def note_live(self) -> None:
        """The monitor saw the browser running: a long enough live run resets the backoff."""
        if self._live_since is not None:
            self.backoff.note_running_since(self._live_since, self.clock.monotonic())

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """The session's task: sleeps until asked to run, then supervises until told to stop.

        Never raises (but re-raises cancellation): a bug is logged, the browser stopped and the
        session left `failed`, from which an explicit start tries again.
        """
        self._running = True
        try:
            while not self.intent.closing:
                since = self.bell.count
                if self.intent.wants_run and self.state in STARTABLE_STATES:
                    await self._guarded_lifecycle()
                else:
                    await self.bell.wait(since)
        except asyncio.CancelledError:
            await asyncio.shield(self.emergency_stop())
            raise
        finally:
            self._running = False

    async def _guarded_lifecycle(self) -> None:
        try:
            await self._lifecycle()
        except Exception:
            self._log.exception("runner_crashed")
            self.intent.settle()
            await asyncio.shield(self.emergency_stop())
            with contextlib.suppress(Exception):
                await self.set_state(
                    S.FAILED, "internal error in the supervisor; see the daemon log"
                )

    async def _lifecycle(self) -> None:
        """Start, watch and restart browsers until the session must stop."""
        reason, after_death = "start requested", False
        while True:
            if self.intent.restart_pending:  # asked for during a backoff: now, with its reason
                reason = self.intent.reason
            if await self._settle_request():
                return
            if after_death:
                self.restarts += 1
            self._live_since = None
            end = await self.one_browser(reason)
            if end.outcome == "restart":
                reason, after_death = end.reason, False
            elif end.outcome in ("death", "trip"):
                if not await self._back_off(end):
                    return
                reason, after_death = f"restart after: {end.reason}", True
            else:
                return

    async def _settle_request(self) -> bool:
        """Before each launch: honour a stop/close/logout that came in; True ends the loop."""
        if self.intent.restart_pending:
            self.intent.pending = False  # a restart is what we are about to do
        if not self.intent.pending and self.intent.wants_run:
            return False
        end = self.intent.take()
        if end is not None and end.outcome == "logout":
            await self.release(wipe=True)
            await self.set_state(S.LOGGED_OUT, end.reason)
        elif self.state not in IDLE_STATES:
            closing = self.intent.closing
            await self.set_state(S.STOPPED, "daemon shutdown" if closing else "stopped on request")
        return True

    async def _back_off(self, end: End) -> bool:
        """After a death: FAILED when too many fell in the window, else BACKOFF and wait.

        False when the session gave up. The wait ends early on any request (start, restart,
        stop, close, logout); `_settle_request` then decides what happens.
        """
        verdict = self.backoff.death(self.clock.monotonic(), end.reason)
        if verdict.give_up:
            self.intent.settle()
            self._log.error("session_gave_up", reason=verdict.reason)
            await self.set_state(S.FAILED, verdict.reason)
            return False
        self._log.warning("backoff_scheduled", cause=end.reason, delay=verdict.delay)
        since = self.bell.count
        await self.set_state(S.BACKOFF, f"{end.reason}; restarting in {verdict.delay:g} s")
        if not self.intent.pending and self.intent.wants_run:  # else a request came in meanwhile
            await self.bell.race(asyncio.ensure_future(self.clock.sleep(verdict.delay)), since)
        return True
