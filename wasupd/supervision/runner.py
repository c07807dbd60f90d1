"""One session's life: start -> watch -> restart with backoff / stop / log out / fail.

The runner talks to the world only through the seams (`Launcher`, `BrowserHandle`,
`PageDriver`, `ProfileHooks`, `Clock`), so every rule here is unit tested with fakes.
Requests (`start`, `stop`, `restart`, `logout`, `close`) record an intent and wake the loop;
`run()` owns every transition, which goes through `states.check_transition` and is handed to
`on_transition` (stored with its reason, published as an event). The last request wins, except
that nothing overrides `close`.

Guarantees: a stop we asked for is never counted as a death; the profile is wiped only after
the browser has exited; whatever happens (cancellation included) a launched browser is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from wasupd.config import BrowserBuild, Config
from wasupd.errors import (
    BrowserError,
    Busy,
    InvalidState,
    KeyUnavailable,
    ProfileError,
    RateLimited,
)
from wasupd.errors import Timeout as TimedOut
from wasupd.supervision.backoff import Backoff
from wasupd.supervision.gate import StartGate
from wasupd.supervision.seams import (
    BrowserHandle,
    Clock,
    DriverReport,
    Launcher,
    LaunchRequest,
    PageDriver,
    ProfileHooks,
    TreeUsage,
)
from wasupd.supervision.states import IDLE_STATES, STARTABLE_STATES, SessionState, check_transition
from wasupd.watchdogs.policy import Limits, LivenessPolicy, QrLimiter, ResourcePolicy, hang_reason

log = structlog.get_logger("wasupd.runner")
S = SessionState
LIVE = frozenset({S.QR, S.SYNCING, S.CONNECTED, S.DEGRADED})
DETACH_TIMEOUT = 5.0  # a driver's detach/reload/unlink is page work: seconds, not minutes
UNLINK_TIMEOUT = 10.0
START_ACK_TIMEOUT = 10.0  # start() returns once the loop took the request


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """A state change, handed to `on_transition`."""

    session: str
    at: float
    from_state: SessionState
    to_state: SessionState
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOptions:
    """Per-session overrides (None = use the config)."""

    phone: str | None = None
    proxy: str | None = None
    user_agent: str | None = None
    build: BrowserBuild | None = None
    extra_args: tuple[str, ...] = ()
    memory_mib: int | None = None
    fds: int | None = None
    processes: int | None = None
    allow_auto: bool | None = None


Command = Literal["stop", "close", "restart", "logout"]
Outcome = Literal["stop", "close", "restart", "logout", "failed", "death", "trip"]
GRACEFUL = frozenset({"stop", "close", "restart", "logout", "failed", "trip"})


@dataclass(frozen=True, slots=True)
class _End:
    """Why the watch of one browser ended."""

    outcome: Outcome
    reason: str
    hung: bool = False  # DevTools is dead: skip the polite close, go straight to signals
    unlink: bool = False  # a requested logout: unlink the device in the page first


class SessionRunner:
    """Supervises one session; `run()` is its task in the manager's TaskGroup."""

    def __init__(
        self,
        name: str,
        *,
        config: Config,
        options: SessionOptions,
        launcher: Launcher,
        driver_factory: Callable[[], PageDriver],
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
        self.driver: PageDriver | None = None
        self.handle: BrowserHandle | None = None
        self.backoff = Backoff(config.restart)
        self.qr_limit = QrLimiter()
        self._log = log.bind(session=name)
        self._wake = asyncio.Event()  # the idle loop: a start (or close) was requested
        self._interrupt = asyncio.Event()  # cuts a launch, an attach or a backoff sleep short
        self._kicks = 0  # requests so far: a wait started at `since` ends when this moves
        self._changed = asyncio.Condition()
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._want_run = False
        self._closing = False
        self._holds_slot = False
        self._running = False  # run() is executing
        self._command: Command | None = None
        self._restart_reason = ""
        self._start_count = 0
        self._prepared = False
        self._live_since: float | None = None
        self._liveness = LivenessPolicy()
        self._linking = False  # a QR or pairing code was on offer: the next connect is a link
        self._checkpoint_due = False

    # -- requests --------------------------------------------------------------------------

    async def start(self) -> None:
        """Request a start; `InvalidState` unless startable, `RateLimited` under the QR limit.

        Returns once the loop has taken the request (the session is `starting` or beyond).
        """
        if self._closing:
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
        self._want_run, self._command = True, None
        seen = self._start_count
        self._kick()  # a backoff sleep ends now
        try:
            async with asyncio.timeout(START_ACK_TIMEOUT), self._changed:
                await self._changed.wait_for(lambda: self._start_count > seen or not self._want_run)
        except TimeoutError:
            raise TimedOut(
                f"session {self.name!r} did not start within {START_ACK_TIMEOUT:g} s",
                session=self.name,
            ) from None

    async def stop(self) -> None:
        """Stop the browser and wait until the session is idle (bounded)."""
        self._want_run = False
        if self.state in IDLE_STATES:
            return
        self._request("stop")
        await self.wait_for(IDLE_STATES, timeout=self._stop_bound())

    async def restart(self, reason: str = "restart requested") -> None:
        """Stop the browser (not counted as a death) and start it again; a backoff ends now."""
        if self.state in IDLE_STATES:
            await self.start()
            return
        self._want_run, self._restart_reason = True, reason
        self._request("restart")

    async def logout(self) -> None:
        """Unlink this device in the page, stop the browser, then wipe the profile: `logged_out`."""
        self._want_run = False
        if self.state in IDLE_STATES:  # no browser: nothing to unlink, only the profile to wipe
            await self.profiles.release(wipe=True)
            await self._set(S.LOGGED_OUT, "logged out on request")
            return
        self._request("logout")
        await self.wait_for(IDLE_STATES, timeout=self._stop_bound())

    async def close(self) -> None:
        """Daemon shutdown: stop the browser (bounded), then end `run()`."""
        self._closing = True
        self._request("close")
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

    def _request(self, command: Command) -> None:
        if self._command != "close":
            self._command = command
        self._events.put_nowait(("command", None))  # wakes a watch
        self._kick()

    def _kick(self) -> None:
        """Wake whatever the loop waits on: the idle wait, a launch, an attach, a backoff."""
        self._kicks += 1
        self._interrupt.set()
        self._wake.set()

    def _take_command(self) -> _End | None:
        command, self._command = self._command, None
        if command is None:
            return None
        if command == "restart":
            return _End("restart", self._restart_reason)
        if command == "logout":
            return _End("logout", "logged out on request", unlink=True)
        return _End(command, "stop requested" if command == "stop" else "daemon shutdown")

    def _stop_bound(self) -> float:
        return self.config.browser.stop_timeout * 2 + 30

    # -- transitions -----------------------------------------------------------------------

    async def _set(self, new: SessionState, reason: str) -> None:
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
                transition = Transition(
                    session=self.name,
                    at=self.clock.time(),
                    from_state=old,
                    to_state=new,
                    reason=reason,
                )
                # Shielded: a transition that happened is recorded even if this task is cancelled.
                await asyncio.shield(self.on_transition(transition))
        finally:
            # Waiters see a state only once it is recorded (stop() returns after the record).
            self._published = new
            if new is S.STARTING:
                self._start_count += 1
        async with self._changed:
            self._changed.notify_all()

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """The session's task: sleeps until asked to run, then supervises until told to stop.

        Never raises (but re-raises cancellation): a bug is logged, the browser stopped and the
        session left `failed`, from which an explicit start tries again.
        """
        self._running = True
        try:
            while not self._closing:
                await self._wake.wait()
                self._wake.clear()
                if self._want_run and not self._closing and self.state in STARTABLE_STATES:
                    await self._guarded_lifecycle()
        except asyncio.CancelledError:
            await asyncio.shield(self._emergency_stop())
            raise
        finally:
            self._running = False

    async def _guarded_lifecycle(self) -> None:
        try:
            await self._lifecycle()
        except Exception:
            self._log.exception("runner_crashed")
            self._want_run = False
            await asyncio.shield(self._emergency_stop())
            with contextlib.suppress(Exception):
                await self._set(S.FAILED, "internal error in the supervisor; see the daemon log")

    async def _lifecycle(self) -> None:
        """Start, watch and restart browsers until the session must stop."""
        reason, after_death = "start requested", False
        while True:
            if self._command == "restart":  # asked for during a backoff: now, with its reason
                reason = self._restart_reason
            if await self._settle_request():
                return
            if after_death:
                self.restarts += 1
            end = await self._one_browser(reason)
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
        if self._command == "restart":
            self._command = None  # a restart is what we are about to do
        if self._command is None and self._want_run and not self._closing:
            return False
        end = self._take_command()
        if end is not None and end.outcome == "logout":
            await self._release(wipe=True)
            await self._set(S.LOGGED_OUT, end.reason)
        elif self.state not in IDLE_STATES:
            closing = self._closing or (end is not None and end.outcome == "close")
            await self._set(S.STOPPED, "daemon shutdown" if closing else "stopped on request")
        return True

    async def _back_off(self, end: _End) -> bool:
        """After a death: FAILED when too many fell in the window, else BACKOFF and wait.

        False when the session gave up. The wait ends early on any request (start, restart,
        stop, close, logout); `_settle_request` then decides what happens.
        """
        verdict = self.backoff.death(self.clock.monotonic(), end.reason)
        if verdict.give_up:
            self._want_run = False
            self._log.error("session_gave_up", reason=verdict.reason)
            await self._set(S.FAILED, verdict.reason)
            return False
        self._log.warning("backoff_scheduled", cause=end.reason, delay=verdict.delay)
        since = self._kicks
        await self._set(S.BACKOFF, f"{end.reason}; restarting in {verdict.delay:g} s")
        if self._command is None and self._want_run:  # else a request came in while stopping
            await self._race(asyncio.ensure_future(self.clock.sleep(verdict.delay)), since)
        return True

    async def _race(
        self, task: asyncio.Future[Any], since: int, *also: asyncio.Future[Any]
    ) -> None:
        """Await `task` until it ends, a request comes in (`_kicks` moved past `since`) or one of
        `also` is done; a task still running is then cancelled and awaited."""
        try:
            if self._kicks == since:
                self._interrupt.clear()
                waker = asyncio.ensure_future(self._interrupt.wait())
                try:
                    await asyncio.wait({task, waker, *also}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waker.cancel()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- one browser -----------------------------------------------------------------------

    async def _one_browser(self, reason: str) -> _End:
        """One browser from launch to exit; returns why it ended (everything cleaned up)."""
        self._drain_events()
        self._live_since, self._liveness, self._checkpoint_due = None, LivenessPolicy(), False
        since = self._kicks  # a request from here on cuts the launch or the attach short
        await self._set(S.STARTING, reason)
        try:
            profile_dir = await self.profiles.prepare()
        except (ProfileError, KeyUnavailable) as exc:
            # The archive is untouched: no release (it would seal an empty dir over it).
            self._want_run = False
            await self._set(S.FAILED, exc.message)
            return _End("failed", exc.message)
        self._prepared = True
        end = await self._launch_and_watch(profile_dir, since)
        await self._finish(end)
        return end

    async def _launch_and_watch(self, profile_dir: Path, since: int) -> _End:
        """Wait for a start slot, launch, load the page (releasing the slot), then watch."""
        slot = asyncio.ensure_future(self.start_gate.acquire())
        await self._race(slot, since)
        if slot.cancelled():  # a request came while we waited in line
            return self._take_command() or _End("stop", "stop requested")
        try:
            return await self._launch_holding_slot(profile_dir, since)
        finally:
            self._release_slot()

    def _release_slot(self) -> None:
        """Give the start slot back (once: after the page loaded, or when the start ended)."""
        if self._holds_slot:
            self._holds_slot = False
            self.start_gate.release()

    async def _launch_holding_slot(self, profile_dir: Path, since: int) -> _End:
        self._holds_slot = True
        request = self.build_request(self.name, profile_dir)
        task = asyncio.ensure_future(self.launcher.launch(request))
        try:
            await self._race(task, since)
        finally:  # even when we are cancelled: a browser that did start must be found and stopped
            if task.done() and not task.cancelled() and task.exception() is None:
                self.handle = task.result()
        if task.cancelled():  # a request came first; the launcher cleaned up after itself
            return self._take_command() or _End("stop", "stop requested")
        if (exc := task.exception()) is not None:
            if isinstance(exc, BrowserError):
                return _End("death", exc.message)
            raise exc
        handle = task.result()
        self.pid, self.started_at = handle.pid, self.clock.time()
        return await self._attach_and_watch(handle, since)

    async def _attach_and_watch(self, handle: BrowserHandle, since: int) -> _End:
        exited = asyncio.ensure_future(self._forward_exit(handle))
        monitor = asyncio.ensure_future(self._monitor(handle))
        try:
            end = await self._attach(handle, since, exited)
            self._release_slot()  # started (or not): the next session may launch
            return end if end is not None else await self._watch()
        finally:
            for t in (exited, monitor):
                t.cancel()
            await asyncio.gather(exited, monitor, return_exceptions=True)

    async def _attach(
        self, handle: BrowserHandle, since: int, exited: asyncio.Future[None]
    ) -> _End | None:
        """Load WhatsApp in the page; an `_End` if that failed or a request came first."""
        driver = self.driver = self.driver_factory()
        timeout = self.config.browser.start_timeout
        task = asyncio.ensure_future(self._load_page(driver, handle, timeout))
        await self._race(task, since, exited)
        if (end := self._take_command()) is not None:
            return end
        if exited.done():
            return None  # the exit event is queued: the watch reports it
        if task.cancelled():  # woken without a command (cannot happen in STARTING): stop
            return _End("stop", "stop requested")
        if (exc := task.exception()) is not None:
            why = f"within {timeout:g} s" if isinstance(exc, TimeoutError) else f"({exc})"
            return _End("death", f"page did not load {why}")
        self.last_activity = self.clock.monotonic()
        return None

    async def _load_page(self, driver: PageDriver, handle: BrowserHandle, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await driver.attach(handle, self._report)

    async def _forward_exit(self, handle: BrowserHandle) -> None:
        status = await handle.wait_exit()
        self._events.put_nowait(("exit", status))

    def _report(self, report: DriverReport) -> None:
        """The driver's callback (synchronous, from its event handlers)."""
        self._events.put_nowait(("report", report))

    def _drain_events(self) -> None:
        """Drop events of a previous browser (its exit, late page reports, wake-ups)."""
        while not self._events.empty():
            self._events.get_nowait()

    async def _watch(self) -> _End:
        """Handle events until the browser's watch must end."""
        while True:
            if (end := self._take_command()) is not None:
                return end
            kind, value = await self._events.get()
            if kind == "exit":
                return _End("death", f"browser exited with status {value}")
            if kind == "trip":
                assert isinstance(value, _End)
                return value
            if kind == "report" and (end := await self._on_report(value)) is not None:
                return end

    async def _on_report(self, report: DriverReport) -> _End | None:
        self.last_activity = self.clock.monotonic()
        if report.kind == "qr" and (refused := self._qr_refused(report.data)) is not None:
            return refused  # never shown: nobody must scan a QR the session will not wait for
        try:
            await self.on_report(self.name, report)
        except Exception:  # a consumer's bug must not take the browser down
            self._log.exception("report_handler_failed", kind=report.kind)
        reason = str(report.data.get("reason") or "")
        if report.kind == "state":
            await self._on_page_state(report)
        elif report.kind == "qr":
            return await self._on_qr(report.data)
        elif report.kind == "code":
            self.code, self._linking = dict(report.data), True
        elif report.kind == "logout":
            return _End("logout", reason or "logged out by the phone")
        elif report.kind == "failed":
            return _End("failed", reason or "refused by WhatsApp")
        elif report.kind == "crash":
            return _End("death", reason or "page crashed (Target closed)")
        return None

    async def _on_page_state(self, report: DriverReport) -> None:
        try:
            new = SessionState(report.value)
        except ValueError:
            self._log.warning("unknown_page_state", value=report.value)
            return
        if new not in LIVE:
            return
        if new is S.QR:
            self._linking = True
        elif new is S.CONNECTED:
            # A reload's check still runs: only a probe that answers proves the page is alive
            # (a page can claim CONNECTED while its link is dead).
            self.qr = self.code = None
            if self._linking:  # freshly linked: seal the new credentials at the next check
                self._linking, self._checkpoint_due = False, True
        if new is not self.state:
            await self._set(new, str(report.data.get("reason") or f"WhatsApp is {new.value}"))

    def _qr_refused(self, data: dict[str, Any]) -> _End | None:
        """A new QR generation (rotation 0) counts against `qr.max_per_hour`; over it, the end."""
        if data.get("rotation") == 0 and not self.qr_limit.admit(
            self.clock.time(), self.config.qr.max_per_hour
        ):
            return _End("failed", self.qr_limit.reason())
        return None

    async def _on_qr(self, data: dict[str, Any]) -> _End | None:
        """A QR on offer (admitted by `_qr_refused`)."""
        self._linking = True
        self.qr = dict(data)
        if self.state is not S.QR:
            await self._set(S.QR, "waiting for the QR to be scanned")
        async with self._changed:
            self._changed.notify_all()  # wait_qr: a rotation is news even in the same state
        return None

    # -- monitor: watchdogs, liveness, checkpoints -----------------------------------------

    def _limits(self) -> Limits:
        lim, o = self.config.limits, self.options
        return Limits(
            memory_mib=o.memory_mib if o.memory_mib is not None else lim.memory_mib,
            fds=o.fds if o.fds is not None else lim.fds,
            processes=o.processes if o.processes is not None else lim.processes,
            cpu_percent=lim.cpu_percent,
        )

    async def _monitor(self, handle: BrowserHandle) -> None:
        """Every check_interval: resources, DevTools ping, liveness, checkpoint when due.

        A tripped check queues a "trip" event for the watch and ends the monitor.
        """
        policy = ResourcePolicy(self._limits())
        next_checkpoint = self.clock.monotonic() + self.config.profiles.checkpoint_interval
        while True:
            await self.clock.sleep(self.config.limits.check_interval)
            try:
                end = await self._check_browser(handle, policy) or await self._check_liveness()
            except Exception:  # a broken check must not silently end all the others
                self._log.exception("watchdog_check_failed")
                continue
            if end is not None:
                self._log.warning("watchdog_tripped", reason=end.reason)
                self._events.put_nowait(("trip", end))
                return
            next_checkpoint = await self._maybe_checkpoint(next_checkpoint)

    async def _check_browser(self, handle: BrowserHandle, policy: ResourcePolicy) -> _End | None:
        """Resource limits, then the hang watchdog (a DevTools round trip)."""
        policy.limits = self._limits()
        # Most samples read a few small /proc files: inline, they cost less than a thread
        # hand-off would (with 50 sessions the hand-offs were a third of the daemon's idle CPU).
        quick = handle.usage_is_quick()
        self.usage = handle.usage() if quick else await asyncio.to_thread(handle.usage)
        if self.state in LIVE and self._live_since is not None:
            self.backoff.note_running_since(self._live_since, self.clock.monotonic())
        if (why := policy.check(self.usage)) is not None:
            return _End("trip", why)
        hang = self.config.browser.hang_timeout
        try:
            # The handle bounds the ping itself; the outer bound is for a handle that does not.
            async with asyncio.timeout(hang + DETACH_TIMEOUT):
                await handle.ping(hang)
        except (BrowserError, TimeoutError):
            return _End("death", hang_reason(hang), hung=True)
        return None

    async def _check_liveness(self) -> _End | None:
        """Probe a silent connected page; degrade + reload, then restart on a second failure."""
        health, now = self.config.health, self.clock.monotonic()
        driver = self.driver
        if driver is None or self.state not in (S.CONNECTED, S.DEGRADED):
            return None
        if not self._liveness.due(now, self.last_activity, health):
            return None
        try:
            async with asyncio.timeout(health.probe_timeout + DETACH_TIMEOUT):
                await driver.probe(health.probe_timeout)
            why = ""
        except Exception as exc:
            why = f"liveness probe failed: {exc or type(exc).__name__}"
        verdict = self._liveness.probed(self.clock.monotonic(), ok=not why)
        if verdict == "ok":
            self.last_activity = self.clock.monotonic()
            if self.state is S.DEGRADED:
                await self._set(S.CONNECTED, "liveness probe answered")
            return None
        if verdict == "restart":
            return _End("trip", f"{why} after a page reload")
        self._log.warning("liveness_failed", reason=why, action="reload")
        if self.state is S.CONNECTED:
            await self._set(S.DEGRADED, why)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(health.probe_timeout + DETACH_TIMEOUT):
                await driver.reload()
        return None

    async def _maybe_checkpoint(self, next_at: float) -> float:
        """Seal the live profile every checkpoint_interval while live, and once after linking."""
        now = self.clock.monotonic()
        if self.state not in LIVE or not (self._checkpoint_due or now >= next_at):
            return next_at
        why = "linked" if self._checkpoint_due else "interval"
        self._checkpoint_due = False
        try:
            await self.profiles.checkpoint()
            self._log.info("checkpoint_taken", why=why)
        except Exception as exc:  # the previous archive stays valid: log, retry next interval
            self._log.warning("checkpoint_failed", why=why, error=str(exc))
        return now + self.config.profiles.checkpoint_interval

    # -- ending a browser ------------------------------------------------------------------

    async def _finish(self, end: _End) -> None:
        """Stop the browser, release the profile, settle the state for `end`."""
        if end.outcome in GRACEFUL:
            await self._set(S.STOPPING, end.reason)
        else:
            self._log.warning("browser_died", cause=end.reason)
        if end.unlink:
            await self._unlink()
        stopped = await self._stop_browser(devtools=not end.hung)
        if end.outcome == "logout" and not stopped:
            why = f"{end.reason}, but the browser could not be stopped; the profile was kept"
            await self._release(wipe=False)
            await self._settle_final(S.FAILED, why)
            return
        await self._release(wipe=end.outcome == "logout")
        if end.outcome == "logout":
            await self._settle_final(S.LOGGED_OUT, end.reason)
        elif end.outcome == "failed":
            await self._settle_final(S.FAILED, end.reason)
        elif end.outcome == "stop":
            await self._settle_final(S.STOPPED, "stopped on request")
        elif end.outcome == "close":
            await self._settle_final(S.STOPPED, "daemon shutdown")

    async def _settle_final(self, state: SessionState, reason: str) -> None:
        self._want_run = False
        await self._set(state, reason)

    async def _unlink(self) -> None:
        """A requested logout: the page unlinks this device before the browser goes."""
        unlink = getattr(self.driver, "logout", None)  # WhatsAppDriver has it; PageDriver need not
        if unlink is None:
            return
        try:
            async with asyncio.timeout(UNLINK_TIMEOUT):
                await unlink()
        except Exception as exc:
            self._log.warning("unlink_failed", error=str(exc) or type(exc).__name__)

    async def _stop_browser(self, *, devtools: bool = True) -> bool:
        """Detach the driver, stop and reap the tree; False if processes may have survived."""
        handle, driver = self.handle, self.driver
        self.driver = None
        if driver is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(DETACH_TIMEOUT):
                    await driver.detach()
        ok = True
        if handle is not None:
            try:
                report = await handle.stop(self.config.browser.stop_timeout, devtools=devtools)
                self._log.info(
                    "browser_reaped", exit_status=report.exit_status, sigkill=report.sent_sigkill
                )
            except Exception as exc:
                ok = False
                self._log.error("browser_stop_failed", error=str(exc))
        self.handle = self.pid = self.started_at = self.usage = None
        self.qr = self.code = None
        return ok

    async def _release(self, *, wipe: bool) -> None:
        if not self._prepared and not wipe:
            return
        self._prepared = False
        try:
            await self.profiles.release(wipe=wipe)
        except Exception as exc:
            self._log.error("profile_release_failed", error=str(exc), wipe=wipe)

    async def _emergency_stop(self) -> None:
        """On cancellation or a bug: no browser may outlive its runner."""
        with contextlib.suppress(Exception):
            await self._stop_browser(devtools=False)
        await self._release(wipe=False)
