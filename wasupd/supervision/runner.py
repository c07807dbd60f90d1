"""One session's life: start -> watch -> restart with backoff / stop / log out / fail.

The runner talks to the world only through the seams (`Launcher`, `BrowserHandle`,
`PageDriver`, `ProfileHooks`, `Clock`), so every rule here is unit tested with fakes.
Requests (`start`, `stop`, `restart`, `logout`, `close`) set an intent and wake the loop;
`run()` owns every transition, which goes through `states.check_transition` and is handed to
`on_transition` (stored with its reason, published as an event).

Guarantees: a stop we asked for is never counted as a death; the profile is wiped only after
the browser has exited; whatever happens (cancellation included) a launched browser is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from wasupd.config import BrowserBuild, Config
from wasupd.errors import (
    BrowserError,
    InvalidState,
    KeyUnavailable,
    ProfileError,
    RateLimited,
    Timeout,
)
from wasupd.supervision.backoff import Backoff
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
from wasupd.supervision.states import STARTABLE_STATES, SessionState, check_transition
from wasupd.watchdogs.policy import Limits, ResourcePolicy

log = structlog.get_logger("wasupd.runner")
S = SessionState
LIVE = frozenset({S.QR, S.SYNCING, S.CONNECTED, S.DEGRADED})


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


Outcome = Literal["stop", "close", "restart", "logout", "failed", "death", "trip"]


@dataclass(slots=True)
class _End:
    """Why the watch of one browser ended."""

    outcome: Outcome
    reason: str


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
    ) -> None:
        self.name = name
        self.config = config
        self.options = options
        self.launcher = launcher
        self.driver_factory = driver_factory
        self.profiles = profiles
        self.clock = clock
        self.on_transition = on_transition
        self.on_report = on_report
        self.build_request = build_request
        self.state = initial_state
        self.reason = ""
        self.restarts = restarts
        self.pid: int | None = None
        self.usage: TreeUsage | None = None
        self.started_at: float | None = None
        self.last_activity: float | None = None
        self.qr: dict[str, Any] | None = None
        self.code: dict[str, Any] | None = None
        self.driver: PageDriver | None = None
        self.handle: BrowserHandle | None = None
        self.backoff = Backoff(config.restart)
        self.qr_generations: deque[float] = deque()
        self.qr_blocked_until = 0.0
        self._log = log.bind(session=name)
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._want_run = False
        self._closing = False
        self._command: Outcome | None = None
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._interrupt = asyncio.Event()  # wakes a backoff sleep on any request
        self._linked_pending = False
        self._launched_mono = 0.0
        self._checkpoint_due = False
        self._start_count = 0

    # -- requests --------------------------------------------------------------------------

    async def start(self) -> None:
        """Request a start; `InvalidState` unless startable, `RateLimited` under the QR limit."""
        if self.state not in STARTABLE_STATES:
            raise InvalidState(
                f"session {self.name!r} is {self.state.value}; it cannot be started now",
                session=self.name,
                state=self.state.value,
            )
        if self.clock.time() < self.qr_blocked_until:
            raise RateLimited(self._qr_limit_reason(), session=self.name)
        self.backoff.reset()
        while not self._events.empty():  # stale requests must not end the new browser
            self._events.get_nowait()
        self._want_run = True
        self._command = None
        seen = self._start_count
        self._wake.set()
        # Return once the loop took the request (the state may already have moved on).
        try:
            async with asyncio.timeout(10), self._changed:
                await self._changed.wait_for(lambda: self._start_count > seen)
        except TimeoutError:
            raise Timeout(
                f"session {self.name!r} did not start within 10 s", session=self.name
            ) from None

    async def stop(self) -> None:
        """Stop the browser and wait until the session is idle (bounded)."""
        self._want_run = False
        self._request("stop")
        await self.wait_for({S.STOPPED, S.FAILED, S.LOGGED_OUT}, timeout=self._stop_bound())

    async def restart(self, reason: str = "restart requested") -> None:
        """Stop the browser (not counted as a death) and start it again."""
        self._want_run = True
        self.reason = reason
        self._request("restart")

    async def logout(self) -> None:
        """Unlink this device, stop, wipe the profile; `logged_out`."""
        self._want_run = False
        if self.state is S.BACKOFF or self.state is S.STARTING:
            await self.stop()
        if self.handle is None:
            await self.profiles.release(wipe=True)
            if self.state is not S.LOGGED_OUT:
                await self._set(S.LOGGED_OUT, "logged out on request")
            return
        self._request("logout")
        await self.wait_for({S.LOGGED_OUT, S.STOPPED, S.FAILED}, timeout=self._stop_bound())

    async def close(self) -> None:
        """Daemon shutdown: stop the browser (bounded), then end `run()`."""
        self._closing = True
        self._request("close")
        with contextlib.suppress(Timeout):
            await self.wait_for(
                {S.STOPPED, S.FAILED, S.LOGGED_OUT, S.BACKOFF}, timeout=self._stop_bound()
            )

    def update_config(self, config: Config) -> None:
        """SIGHUP: limits, restart, health and QR settings apply from the next check."""
        self.config = config
        self.backoff.config = config.restart

    def _request(self, command: Outcome) -> None:
        self._command = command
        self._events.put_nowait(("command", command))
        self._interrupt.set()
        self._wake.set()

    def _stop_bound(self) -> float:
        return self.config.browser.stop_timeout * 2 + 30

    async def wait_qr(self, timeout: float) -> dict[str, Any] | None:
        """Wait until a QR is on offer (or the session leaves starting/qr); the QR or None."""
        waiting = (S.STARTING, S.QR)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(
                    lambda: self.qr is not None or self.state not in waiting
                )
        return self.qr if self.state is S.QR else None

    async def wait_for(self, states: Collection[SessionState], timeout: float) -> SessionState:
        """Wait until the state is one of `states`; `Timeout` after `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self.state in states)
        except TimeoutError:
            raise Timeout(
                f"session {self.name!r} still {self.state.value} after {timeout:g} s",
                session=self.name,
            ) from None
        return self.state

    # -- transitions -----------------------------------------------------------------------

    async def _set(self, new: SessionState, reason: str) -> None:
        old = self.state
        if old is new and reason == self.reason:
            return
        if old is not new:
            check_transition(self.name, old, new)
        self.state, self.reason = new, reason
        if new is S.STARTING:
            self._start_count += 1
        if old is not new:
            await self.on_transition(
                Transition(
                    session=self.name,
                    at=self.clock.time(),
                    from_state=old,
                    to_state=new,
                    reason=reason,
                )
            )
        async with self._changed:
            self._changed.notify_all()

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """The session's task: sleeps until asked to run, then supervises until told to stop."""
        try:
            while not self._closing:
                await self._wake.wait()
                self._wake.clear()
                if self._want_run and not self._closing and self.state in STARTABLE_STATES:
                    await self._lifecycle()
        except asyncio.CancelledError:
            await asyncio.shield(self._emergency_stop())
            raise
        except Exception:
            self._log.exception("runner_crashed")
            await asyncio.shield(self._emergency_stop())
            with contextlib.suppress(Exception):
                await self._set(S.FAILED, "internal error in the supervisor; see the daemon log")

    async def _lifecycle(self) -> None:
        """Start, watch and restart the browser until the session must stop."""
        reason = "start requested"
        while self._want_run and not self._closing:
            end = await self._one_browser(reason)
            if end.outcome in ("stop", "close", "logout", "failed"):
                return
            if end.outcome == "restart":
                reason = end.reason or "restart requested"
                self.restarts += 1
                continue
            # A death or a watchdog trip: back off, or give up.
            self.restarts += 1
            verdict = self.backoff.death(self.clock.monotonic(), end.reason)
            if verdict.give_up:
                await self._set(S.FAILED, verdict.reason)
                self._want_run = False
                return
            await self._set(S.BACKOFF, f"{end.reason}; restarting in {verdict.delay:g} s")
            if not await self._sleep_unless_stopped(verdict.delay):
                await self._set(S.STOPPED, "stopped during backoff")
                return
            reason = f"restart after: {end.reason}"

    async def _sleep_unless_stopped(self, delay: float) -> bool:
        """Sleep `delay` (cut short by any request); False if the session must not start again."""
        self._interrupt.clear()
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        waker = asyncio.ensure_future(self._interrupt.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (sleeper, waker):
                t.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)
        while not self._events.empty():  # the request that woke us is handled by the flags
            self._events.get_nowait()
        return self._want_run and not self._closing

    async def _one_browser(self, reason: str) -> _End:
        """One browser from launch to exit; returns why it ended (everything cleaned up)."""
        self._drain_events()
        self._command = None
        await self._set(S.STARTING, reason)
        self._launched_mono = self.clock.monotonic()
        try:
            profile_dir = await self.profiles.prepare()
        except (ProfileError, KeyUnavailable) as exc:
            self._want_run = False
            await self._set(S.FAILED, exc.message)
            return _End("failed", exc.message)
        try:
            self.handle = await self.launcher.launch(self.build_request(self.name, profile_dir))
        except BrowserError as exc:
            await self._release(wipe=False)
            return _End("death", exc.message)
        self.pid, self.started_at = self.handle.pid, self.clock.time()
        end = await self._attach_and_watch(self.handle)
        await self._finish(end)
        return end

    async def _attach_and_watch(self, handle: BrowserHandle) -> _End:
        exit_task = asyncio.ensure_future(self._forward_exit(handle))
        monitor = asyncio.ensure_future(self._monitor(handle))
        try:
            self.driver = self.driver_factory()
            try:
                async with asyncio.timeout(self.config.browser.start_timeout):
                    await self.driver.attach(handle, self._report)
            except Exception as exc:  # TimeoutError, BrowserError, pyppeteer's errors
                return _End("death", f"page did not load: {exc or type(exc).__name__}")
            self.last_activity = self.clock.monotonic()
            return await self._watch()
        finally:
            for t in (exit_task, monitor):
                t.cancel()
            await asyncio.gather(exit_task, monitor, return_exceptions=True)

    async def _forward_exit(self, handle: BrowserHandle) -> None:
        status = await handle.wait_exit()
        self._events.put_nowait(("exit", status))

    def _report(self, report: DriverReport) -> None:
        """The driver's callback (synchronous, from its event handlers)."""
        self._events.put_nowait(("report", report))

    def _drain_events(self) -> None:
        """Drop stale page/exit events of a previous browser; keep pending requests."""
        keep = []
        while not self._events.empty():
            item = self._events.get_nowait()
            if item[0] == "command":
                keep.append(item)
        for item in keep:
            self._events.put_nowait(item)

    async def _watch(self) -> _End:
        """Handle events until the browser's watch must end."""
        while True:
            kind, value = await self._events.get()
            if kind == "command":
                return _End(value, self.reason if value == "restart" else "")
            if kind == "exit":
                return _End("death", f"browser exited with status {value}")
            if kind == "trip":
                outcome, why = value
                return _End(outcome, why)
            end = await self._on_report(value)
            if end is not None:
                return end

    async def _on_report(self, report: DriverReport) -> _End | None:
        self.last_activity = self.clock.monotonic()
        await self.on_report(self.name, report)
        if report.kind == "state":
            return await self._on_page_state(report)
        if report.kind == "qr":
            self.qr = dict(report.data)
            if report.data.get("rotation") == 0 and not self._count_qr_generation():
                return _End("failed", self._qr_limit_reason())
            if self.state is not S.QR:
                await self._set(S.QR, "waiting for the QR to be scanned")
            async with self._changed:
                self._changed.notify_all()
        elif report.kind == "code":
            self.code = dict(report.data)
        elif report.kind == "logout":
            return _End("logout", str(report.data.get("reason") or "logged out by the phone"))
        elif report.kind == "failed":
            return _End("failed", str(report.data.get("reason") or "refused by WhatsApp"))
        elif report.kind == "crash":
            return _End("death", str(report.data.get("reason") or "page crashed (Target closed)"))
        return None

    async def _on_page_state(self, report: DriverReport) -> _End | None:
        try:
            new = SessionState(report.value)
        except ValueError:
            return None
        if new is S.QR:
            self._linked_pending = True
        elif new is S.CONNECTED:
            self.qr = None
            self.code = None
            if self.state in (S.QR, S.SYNCING) and self._linked_pending:
                self._linked_pending = False
                self._checkpoint_due = True  # the monitor seals the freshly linked profile
        if new is not self.state and new in LIVE:
            await self._set(new, str(report.data.get("reason", "")))
        return None

    # -- QR limit --------------------------------------------------------------------------

    def _count_qr_generation(self) -> bool:
        """Record a new QR generation; False when it exceeds `qr.max_per_hour`."""
        now = self.clock.time()
        while self.qr_generations and now - self.qr_generations[0] > 3600:
            self.qr_generations.popleft()
        if self.config.qr.max_per_hour and len(self.qr_generations) >= self.config.qr.max_per_hour:
            self.qr_blocked_until = self.qr_generations[0] + 3600
            return False
        self.qr_generations.append(now)
        return True

    def _qr_limit_reason(self) -> str:
        until = time.strftime("%H:%M UTC", time.gmtime(self.qr_blocked_until))
        return f"QR limit: {self.config.qr.max_per_hour} generations in the last hour; try again after {until}"

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
        """Every check_interval: resources, DevTools ping, liveness, checkpoint when due."""
        policy = ResourcePolicy(self._limits())
        last_probe = -1e18
        next_checkpoint = self.clock.monotonic() + self.config.profiles.checkpoint_interval
        while True:
            await self.clock.sleep(self.config.limits.check_interval)
            policy.limits = self._limits()
            self.usage = await asyncio.to_thread(handle.usage)
            if self.state in LIVE:
                self.backoff.note_running_since(self._launched_mono, self.clock.monotonic())
            why = policy.check(self.usage)
            if why:
                self._log.warning("watchdog_tripped", reason=why)
                self._events.put_nowait(("trip", ("trip", why)))
                return
            try:
                await handle.ping(self.config.browser.hang_timeout)
            except BrowserError:
                why = f"watchdog: DevTools did not answer within {self.config.browser.hang_timeout:g} s"
                self._log.warning("watchdog_tripped", reason=why)
                self._events.put_nowait(("trip", ("death", why)))
                return
            last_probe = await self._liveness(last_probe)
            due = self.clock.monotonic() >= next_checkpoint
            if (due or self._checkpoint_due) and self.state in LIVE:
                next_checkpoint = self.clock.monotonic() + self.config.profiles.checkpoint_interval
                await self._checkpoint("linked" if self._checkpoint_due else "interval")
                self._checkpoint_due = False

    async def _liveness(self, last_probe: float) -> float:
        """Probe a silent connected page; degrade, reload, then restart on failure."""
        h = self.config.health
        now = self.clock.monotonic()
        silent = self.last_activity is not None and now - self.last_activity > h.silence_timeout
        if self.driver is None or self.state not in (S.CONNECTED, S.DEGRADED) or not silent:
            return last_probe
        if now - last_probe < h.probe_interval:
            return last_probe
        try:
            await self.driver.probe(h.probe_timeout)
            self.last_activity = self.clock.monotonic()
            if self.state is S.DEGRADED:
                await self._set(S.CONNECTED, "liveness probe answered")
            return now
        except Exception as exc:
            why = f"liveness probe failed: {exc}"
        if self.state is S.CONNECTED:
            await self._set(S.DEGRADED, why)
            self._log.warning("liveness_failed", reason=why, action="reload")
            with contextlib.suppress(Exception):
                await self.driver.reload()
            return -1e18  # probe again at the next check, after the reload
        self._events.put_nowait(("trip", ("trip", f"{why} after a page reload")))
        return now

    async def _checkpoint(self, why: str) -> None:
        try:
            await self.profiles.checkpoint()
            self._log.info("checkpoint_taken", why=why)
        except Exception as exc:
            self._log.warning("checkpoint_failed", why=why, error=str(exc))

    # -- ending a browser ------------------------------------------------------------------

    async def _finish(self, end: _End) -> None:
        """Stop the browser and settle the state for `end`."""
        graceful = end.outcome in ("stop", "close", "restart", "logout", "failed", "trip")
        if graceful:
            await self._set(S.STOPPING, end.reason or f"{end.outcome} requested")
        if end.outcome == "logout" and not end.reason and self.driver is not None:
            unlink = getattr(self.driver, "logout", None)  # a requested logout unlinks first
            if unlink is not None:
                with contextlib.suppress(Exception):
                    await unlink()
            end.reason = "logged out on request"
        await self._stop_browser(devtools="DevTools did not answer" not in end.reason)
        await self._release(wipe=end.outcome == "logout")
        if end.outcome == "logout":
            await self._set(S.LOGGED_OUT, end.reason)
            self._want_run = False
        elif end.outcome == "failed":
            await self._set(S.FAILED, end.reason)
            self._want_run = False
        elif end.outcome in ("stop", "close"):
            await self._set(
                S.STOPPED, "stopped on request" if end.outcome == "stop" else "daemon shutdown"
            )

    async def _stop_browser(self, *, devtools: bool = True) -> None:
        handle, driver = self.handle, self.driver
        self.driver = None
        if driver is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await driver.detach()
        if handle is not None:
            try:
                report = await handle.stop(self.config.browser.stop_timeout, devtools=devtools)
                self._log.info(
                    "browser_reaped", exit_status=report.exit_status, sigkill=report.sent_sigkill
                )
            except Exception as exc:
                self._log.error("browser_stop_failed", error=str(exc))
        self.handle, self.pid, self.started_at, self.usage = None, None, None, None
        self.qr = None
        self.code = None

    async def _release(self, *, wipe: bool) -> None:
        try:
            await self.profiles.release(wipe=wipe)
        except Exception as exc:
            self._log.error("profile_release_failed", error=str(exc), wipe=wipe)

    async def _emergency_stop(self) -> None:
        """On cancellation or a bug: no browser may outlive its runner."""
        if self.handle is not None:
            with contextlib.suppress(Exception):
                await self._stop_browser()
            await self._release(wipe=False)
