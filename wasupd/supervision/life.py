"""One browser's life, from launch to exit, for the session runner.

`BrowserLife.one_browser` prepares the profile, waits for a start slot, launches, loads the
page, watches (page reports, the browser's exit, the monitor's trips and requests all arrive as
events on one queue) and finally stops the browser and releases the profile. It returns the
`End` that tells the runner's loop what happened; every wait in it is cut short by a request
(`Doorbell.race`). `SessionRunner` adds the requests and the loop on top.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from wasupd.config import Config
from wasupd.errors import BrowserError, KeyUnavailable, ProfileError
from wasupd.supervision.gate import StartGate
from wasupd.supervision.intent import Intent
from wasupd.supervision.interrupt import Doorbell, companions
from wasupd.supervision.monitor import DETACH_TIMEOUT, Monitor
from wasupd.supervision.rules import GRACEFUL, End, Facts, decide, new_qr_generation
from wasupd.supervision.seams import (
    BrowserHandle,
    Clock,
    DriverReport,
    Launcher,
    LaunchRequest,
    PageDriver,
    ProfileHooks,
    SessionDriver,
    SessionOptions,
    TreeUsage,
)
from wasupd.supervision.states import SessionState
from wasupd.watchdogs.policy import QrLimiter

S = SessionState
UNLINK_TIMEOUT = 10.0
Event = tuple[
    str, Any
]  # ("exit", status) | ("report", DriverReport) | ("trip", End) | ("command", None)


class BrowserLife:
    """The browser part of a session runner (the attributes are the runner's)."""

    name: str
    config: Config
    options: SessionOptions
    launcher: Launcher
    driver_factory: Callable[[], SessionDriver]
    profiles: ProfileHooks
    clock: Clock
    build_request: Callable[[str, Path], LaunchRequest]
    start_gate: StartGate
    on_report: Callable[[str, DriverReport], Awaitable[None]]
    state: SessionState
    pid: int | None
    usage: TreeUsage | None
    started_at: float | None
    last_activity: float | None
    qr: dict[str, Any] | None
    code: dict[str, Any] | None
    driver: SessionDriver | None
    handle: BrowserHandle | None
    qr_limit: QrLimiter
    intent: Intent
    bell: Doorbell
    _log: Any

    def __init__(self) -> None:
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._holds_slot = False
        self._prepared = False
        self._linking = False  # a QR or pairing code was on offer: the next connect is a link
        self._monitor: Monitor | None = None

    async def set_state(self, new: SessionState, reason: str) -> None:
        raise NotImplementedError  # the runner's: the one place a state changes

    async def notify(self) -> None:
        raise NotImplementedError  # the runner's: wakes its waiters

    def note_live(self) -> None:
        raise NotImplementedError  # the runner's: feeds the backoff

    async def reclaimed(self, report: DriverReport) -> None:
        """The monitor reclaimed memory: handed on like a page report, not judged by the rules."""
        try:
            await self.on_report(self.name, report)
        except Exception:  # a consumer's bug must not take the browser down
            self._log.exception("report_handler_failed", kind=report.kind)

    @property
    def reports_waiting(self) -> int:
        """Page reports (messages, acks, states) received and not handled yet: a figure that
        grows when the session's reports come faster than the daemon stores them."""
        return self._events.qsize()

    def wake_watch(self) -> None:
        """A request came in: the watch of the current browser takes it."""
        self._events.put_nowait(("command", None))

    # -- one browser -----------------------------------------------------------------------

    async def one_browser(self, reason: str) -> End:
        """One browser from launch to exit; returns why it ended (everything cleaned up)."""
        self._drain_events()
        since = self.bell.count  # a request from here on cuts the launch or the attach short
        await self.set_state(S.STARTING, reason)
        try:
            profile_dir = await self.profiles.prepare()
        except (ProfileError, KeyUnavailable) as exc:
            # The archive is untouched: no release (it would seal an empty dir over it).
            self.intent.settle()
            await self.set_state(S.FAILED, exc.message)
            return End("failed", exc.message)
        self._prepared = True
        end = await self._launch_and_watch(profile_dir, since)
        await self._finish(end)
        return end

    async def _launch_and_watch(self, profile_dir: Path, since: int) -> End:
        """Wait for a start slot, launch, load the page (releasing the slot), then watch."""
        slot = asyncio.ensure_future(self.start_gate.acquire())
        await self.bell.race(slot, since)
        if slot.cancelled():  # a request came while we waited in line
            return self.intent.take() or End("stop", "stop requested")
        self._holds_slot = True
        try:
            return await self._launch(profile_dir, since)
        finally:
            self._release_slot()

    def _release_slot(self) -> None:
        """Give the start slot back (once: after the page loaded, or when the start ended)."""
        if self._holds_slot:
            self._holds_slot = False
            self.start_gate.release()

    async def _launch(self, profile_dir: Path, since: int) -> End:
        task = asyncio.ensure_future(
            self.launcher.launch(self.build_request(self.name, profile_dir))
        )
        try:
            await self.bell.race(task, since)
        finally:  # even when we are cancelled: a browser that did start must be found and stopped
            if task.done() and not task.cancelled() and task.exception() is None:
                self.handle = task.result()
        if task.cancelled():  # a request came first; the launcher cleaned up after itself
            return self.intent.take() or End("stop", "stop requested")
        if (exc := task.exception()) is not None:
            if isinstance(exc, BrowserError):
                return End("death", exc.message)
            raise exc
        handle = task.result()
        self.pid, self.started_at = handle.pid, self.clock.time()
        return await self._attach_and_watch(handle, since)

    async def _attach_and_watch(self, handle: BrowserHandle, since: int) -> End:
        monitor = self._monitor = Monitor(
            self, handle, clock=self.clock, profiles=self.profiles, post=self._trip, log=self._log
        )
        async with companions(self._forward_exit(handle), monitor.run()) as (exited, _):
            end = await self._attach(handle, since, exited)
            self._release_slot()  # started (or not): the next session may launch
            return end if end is not None else await self._watch()

    async def _attach(
        self, handle: BrowserHandle, since: int, exited: asyncio.Future[None]
    ) -> End | None:
        """Load WhatsApp in the page; an `End` if that failed or a request came first."""
        driver = self.driver = self.driver_factory()
        timeout = self.config.browser.start_timeout
        task = asyncio.ensure_future(self._load_page(driver, handle, timeout))
        await self.bell.race(task, since, exited)
        if (end := self.intent.take()) is not None:
            return end
        if exited.done():
            return None  # the exit event is queued: the watch reports it
        if task.cancelled():  # woken without a command (cannot happen in STARTING): stop
            return End("stop", "stop requested")
        if (exc := task.exception()) is not None:
            why = f"within {timeout:g} s" if isinstance(exc, TimeoutError) else f"({exc})"
            return End("death", f"page did not load {why}")
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

    def _trip(self, end: End) -> None:
        """The monitor's callback: a watchdog tripped."""
        self._events.put_nowait(("trip", end))

    def _drain_events(self) -> None:
        """Drop events of a previous browser (its exit, late page reports, wake-ups)."""
        while not self._events.empty():
            self._events.get_nowait()

    # -- watching --------------------------------------------------------------------------

    async def _watch(self) -> End:
        """Handle events until the browser's watch must end."""
        while True:
            if (end := self.intent.take()) is not None:
                return end
            kind, value = await self._events.get()
            if kind == "exit":
                return End("death", f"browser exited with status {value}")
            if kind == "trip":
                assert isinstance(value, End)
                return value
            if kind == "report" and (end := await self._on_report(value)) is not None:
                return end

    async def _on_report(self, report: DriverReport) -> End | None:
        self.last_activity = self.clock.monotonic()
        if new_qr_generation(report) and not self.qr_limit.admit(
            self.clock.time(), self.config.qr.max_per_hour
        ):
            # Never shown: nobody must scan a QR the session will not wait for.
            return End("failed", self.qr_limit.reason())
        try:
            await self.on_report(self.name, report)
        except Exception:  # a consumer's bug must not take the browser down
            self._log.exception("report_handler_failed", kind=report.kind)
        decision = decide(report, Facts(state=self.state, linking=self._linking))
        self._linking = decision.linking
        if decision.unknown_state:
            self._log.warning("unknown_page_state", value=decision.unknown_state)
        if decision.connected:
            self.qr = self.code = None
        if decision.checkpoint and self._monitor is not None:
            self._monitor.checkpoint_due = True
        if decision.code is not None:
            self.code = decision.code
        if decision.qr is not None:
            self.qr = decision.qr
        if decision.state is not None:
            await self.set_state(decision.state, decision.reason)
        if decision.qr is not None:
            await self.notify()  # wait_qr: a rotation is news even in the same state
        return decision.end

    # -- ending a browser ------------------------------------------------------------------

    async def _finish(self, end: End) -> None:
        """Stop the browser, release the profile, settle the state for `end`."""
        if end.outcome in GRACEFUL:
            await self.set_state(S.STOPPING, end.reason)
        else:
            self._log.warning("browser_died", cause=end.reason)
        if end.unlink:
            await self._unlink()
        stopped = await self.stop_browser(devtools=not end.hung)
        if end.outcome == "logout" and not stopped:
            why = f"{end.reason}, but the browser could not be stopped; the profile was kept"
            await self.release(wipe=False)
            await self._settle_final(S.FAILED, why)
            return
        await self.release(wipe=end.outcome == "logout")
        final = {
            "logout": (S.LOGGED_OUT, end.reason),
            "failed": (S.FAILED, end.reason),
            "stop": (S.STOPPED, "stopped on request"),
            "close": (S.STOPPED, "daemon shutdown"),
        }.get(end.outcome)
        if final is not None:
            await self._settle_final(*final)

    async def _settle_final(self, state: SessionState, reason: str) -> None:
        self.intent.settle()
        await self.set_state(state, reason)

    async def _unlink(self) -> None:
        """A requested logout: the page unlinks this device before the browser goes."""
        if self.driver is None:
            return
        try:
            async with asyncio.timeout(UNLINK_TIMEOUT):
                await self.driver.logout()
        except Exception as exc:
            self._log.warning("unlink_failed", error=str(exc) or type(exc).__name__)

    async def stop_browser(self, *, devtools: bool = True) -> bool:
        """Detach the driver, stop and reap the tree; False if processes may have survived."""
        handle, driver = self.handle, self.driver
        self.driver, self._monitor = None, None
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

    async def release(self, *, wipe: bool) -> None:
        """Seal (or with `wipe` delete) the profile, once per prepare; errors are logged."""
        if not self._prepared and not wipe:
            return
        self._prepared = False
        try:
            await self.profiles.release(wipe=wipe)
        except Exception as exc:
            self._log.error("profile_release_failed", error=str(exc), wipe=wipe)

    async def emergency_stop(self) -> None:
        """On cancellation or a bug: no browser may outlive its runner."""
        with contextlib.suppress(Exception):
            await self.stop_browser(devtools=False)
        await self.release(wipe=False)
