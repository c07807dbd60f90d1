"""Fakes for the session runner's seams (launcher, browser handle, page driver, profiles, clock)
and a `Harness` that wires a runner to them in virtual time.

Every fake appends what it was asked to do to one shared `log`, so tests can assert the order of
effects ("the browser was stopped before the profile was wiped").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wasupd.config import Config, parse_config
from wasupd.errors import BrowserError
from wasupd.supervision.gate import StartGate
from wasupd.supervision.runner import SessionRunner, Transition
from wasupd.supervision.seams import (
    DriverReport,
    LaunchRequest,
    Report,
    SessionOptions,
    StopReport,
    TreeUsage,
)
from wasupd.supervision.states import SessionState, is_legal

BOUND = 5.0  # real seconds any condition in a unit test may take


async def until(cond: Callable[[], bool], what: str = "condition", timeout: float = BOUND) -> None:
    """Wait (bounded) until `cond()` holds, letting every task (and to_thread) run meanwhile."""
    try:
        async with asyncio.timeout(timeout):
            while not cond():
                await asyncio.sleep(0.001)
    except TimeoutError:
        raise AssertionError(f"{what} did not happen within {timeout:g} s") from None


async def settle(rounds: int = 200) -> None:
    """Let every ready task run until it blocks (no real time passes: the harness runs
    `to_thread` inline, so nothing the runner waits on is outside this event loop)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


OFFLOADED = [False]  # true while a function "runs in a thread" (the inline to_thread)


async def _inline_to_thread(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    OFFLOADED[0] = True
    try:
        return func(*args, **kwargs)
    finally:
        OFFLOADED[0] = False


class FakeClock:
    """Virtual time: `sleep` returns only when a test `advance`s past its deadline."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sleepers.append((self.now + max(seconds, 0.0), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers in deadline order and letting tasks run."""
        target = self.now + seconds
        while True:
            await settle()
            self.sleepers = [(d, f) for d, f in self.sleepers if not f.done()]
            due = sorted((s for s in self.sleepers if s[0] <= target), key=lambda s: s[0])
            if not due:
                break
            deadline, fut = due[0]
            self.now = max(self.now, deadline)
            self.sleepers.remove((deadline, fut))
            fut.set_result(None)
        self.now = target
        await settle()


class FakeHandle:
    """A 'browser': exits when told, answers pings unless hung, reports a usage sample."""

    def __init__(self, pid: int, profile_dir: Path, log: list[str]) -> None:
        self.pid = pid
        self.profile_dir = profile_dir
        self.page = None
        self.log = log
        self.hung = False
        self.stop_error: Exception | None = None
        self.sample = TreeUsage(pss_bytes=100 << 20, fds=100, processes=5)
        self.quick = False  # what usage_is_quick answers
        self.sampled_in: list[str] = []  # "thread" or "loop", for each usage() call
        self.reclaims: list[int] = []  # PSS bytes of the sample each reclaim started from
        self.reclaim_to: TreeUsage | None = None  # the sample after a reclaim (None: freed nothing)
        self.reclaim_error: Exception | None = None
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @property
    def alive(self) -> bool:
        return not self.exited.done()

    def crash(self, status: int = -9) -> None:
        if not self.exited.done():
            self.exited.set_result(status)

    async def wait_exit(self) -> int:
        return await asyncio.shield(self.exited)

    async def ping(self, timeout: float) -> None:
        if self.hung:
            raise BrowserError(f"DevTools did not answer within {timeout:g} s")

    async def stop(self, timeout: float, *, devtools: bool = True) -> StopReport:
        self.log.append(f"stop:{self.pid}" + ("" if devtools else ":nodevtools"))
        if self.stop_error is not None:
            raise self.stop_error
        self.crash(0)
        return StopReport(exit_status=0, closed_via_devtools=devtools)

    def usage(self) -> TreeUsage:
        self.sampled_in.append("thread" if OFFLOADED[0] else "loop")
        return self.sample

    def usage_is_quick(self) -> bool:
        return self.quick

    async def reclaim(self, timeout: float) -> TreeUsage:
        self.reclaims.append(self.sample.pss_bytes)
        if self.reclaim_error is not None:
            raise self.reclaim_error
        if self.reclaim_to is None:
            return self.usage()  # freed nothing: a fresh sample says the same
        self.sample = self.reclaim_to  # what was freed stays freed until the page grows again
        return self.sample


class FakeLauncher:
    """Hands out FakeHandles; `fail_next` makes launches raise, `gate` holds them back."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.handles: list[FakeHandle] = []
        self.requests: list[LaunchRequest] = []
        self.fail_next = 0
        self.gate: asyncio.Event | None = None

    async def launch(self, request: LaunchRequest) -> FakeHandle:
        self.requests.append(request)
        self.log.append("launching")
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.log.append("launch:cancelled")  # the real launcher cleans up here
                raise
        if self.fail_next:
            self.fail_next -= 1
            raise BrowserError("browser exited with status 1 during start")
        h = FakeHandle(100 + len(self.handles), request.profile_dir, self.log)
        self.handles.append(h)
        self.log.append(f"launch:{h.pid}")
        return h

    @property
    def alive(self) -> list[FakeHandle]:
        return [h for h in self.handles if h.alive]


class FakeDriver:
    """Records calls; tests push reports through `report`; `gate` holds attach back."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.report: Report | None = None
        self.probe_error: Exception | None = None
        self.attach_error: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.probes = 0
        self.reloads = 0

    async def attach(self, handle: Any, report: Report) -> None:
        self.report = report
        if self.gate is not None:
            await self.gate.wait()
        if self.attach_error is not None:
            raise self.attach_error

    async def probe(self, timeout: float) -> None:
        self.probes += 1
        if self.probe_error is not None:
            raise self.probe_error

    async def reload(self) -> None:
        self.reloads += 1

    async def detach(self) -> None:
        self.log.append("detach")
        self.report = None

    async def logout(self) -> None:
        self.log.append("unlink")

    async def request_pairing_code(self, phone: str, notify: bool = True) -> dict[str, Any]:
        self.log.append(f"pair:{phone}")
        code = {"code": "ABCD1234", "expires_at": 0.0}
        if self.report is not None:
            self.report(DriverReport(kind="code", data=code))
        return code


class FakeProfiles:
    """Records prepare/release/checkpoint in the shared log (for ordering assertions)."""

    def __init__(self, log: list[str], root: Path) -> None:
        self.log = log
        self.root = root
        self.prepare_error: Exception | None = None
        self.checkpoint_error: Exception | None = None

    async def prepare(self) -> Path:
        if self.prepare_error is not None:
            raise self.prepare_error
        self.log.append("prepare")
        return self.root

    async def checkpoint(self) -> None:
        self.log.append("checkpoint")
        if self.checkpoint_error is not None:
            raise self.checkpoint_error

    async def release(self, *, wipe: bool) -> None:
        self.log.append(f"release:wipe={wipe}")

    def sizes(self) -> dict[str, int]:
        return {"live_bytes": 0, "sealed_bytes": 0}


def request_for(name: str, profile_dir: Path) -> LaunchRequest:
    """A launch request for the fake launcher (nothing in it is executed)."""
    return LaunchRequest(
        session=name,
        profile_dir=profile_dir,
        executable="/nonexistent/chromium",
        args=[],
        url="http://127.0.0.1:1/",
        user_agent="ua",
        start_timeout=5,
    )


FAST: dict[str, Any] = {
    "limits": {"check_interval": 1.0},
    "restart": {"backoff_initial": 1.0, "max_failures": 3},
}


class Harness:
    """A runner wired to fakes, with its transitions and reports collected.

    Every transition the runner hands over is asserted legal; on exit the runner is closed and
    no fake browser may still be running (the runner's no-leak guarantee).
    """

    def __init__(
        self,
        tmp: Path,
        *,
        options: SessionOptions | None = None,
        start_gate: StartGate | None = None,
        **config: Any,
    ) -> None:
        self.log: list[str] = []
        self.clock = FakeClock()
        self.launcher = FakeLauncher(self.log)
        self.drivers: list[FakeDriver] = []
        self.profiles = FakeProfiles(self.log, tmp)
        self.transitions: list[Transition] = []
        self.reports: list[tuple[str, DriverReport]] = []
        self.report_error: Exception | None = None
        self.transition_error: Exception | None = None  # raised after recording each one
        self.next_driver: Callable[[FakeDriver], None] = lambda d: None
        sections = {k: {**FAST.get(k, {}), **config.get(k, {})} for k in {*FAST, *config}}
        self.config: Config = parse_config(sections)
        self.runner = SessionRunner(
            "s1",
            config=self.config,
            options=options or SessionOptions(),
            launcher=self.launcher,
            driver_factory=self._driver,
            profiles=self.profiles,
            clock=self.clock,
            on_transition=self._on_transition,
            on_report=self._on_report,
            build_request=request_for,
            start_gate=start_gate,
        )
        self.task: asyncio.Task[None] | None = None

    def _driver(self) -> FakeDriver:
        d = FakeDriver(self.log)
        self.next_driver(d)
        self.drivers.append(d)
        return d

    async def _on_transition(self, t: Transition) -> None:
        assert is_legal(t.from_state, t.to_state), t
        self.transitions.append(t)
        if self.transition_error is not None:
            raise self.transition_error

    async def _on_report(self, name: str, r: DriverReport) -> None:
        self.reports.append((name, r))
        if self.report_error is not None:
            raise self.report_error

    @property
    def state(self) -> SessionState:
        return self.runner.state

    @property
    def states(self) -> list[str]:
        return [t.to_state.value for t in self.transitions]

    @property
    def reasons(self) -> list[str]:
        return [t.reason for t in self.transitions]

    @property
    def driver(self) -> FakeDriver:
        return self.drivers[-1]

    @property
    def handle(self) -> FakeHandle:
        return self.launcher.handles[-1]

    def push(self, kind: str, value: str = "", **data: Any) -> None:
        """Report something from the page, as the driver would."""
        assert self.driver.report is not None, "no driver is attached"
        self.driver.report(DriverReport(kind=kind, value=value, data=data))  # type: ignore[arg-type]

    async def reach(self, state: SessionState) -> None:
        """Wait (bounded) until the runner is in `state` and that transition was recorded."""
        await until(
            lambda: (
                self.runner.state is state
                and bool(self.transitions)
                and self.transitions[-1].to_state is state
            ),
            f"state {state.value}",
        )

    async def started(self) -> None:
        """Start and wait until the page is attached."""
        n = len(self.drivers)
        await self.runner.start()
        await until(lambda: len(self.drivers) > n and self.driver.report is not None, "attach")

    async def connected(self) -> None:
        """Start, then walk the page through qr -> syncing -> connected."""
        await self.started()
        for s in ("qr", "syncing", "connected"):
            self.push("state", s)
        await self.reach(SessionState.CONNECTED)

    async def __aenter__(self) -> Harness:
        # Usage samples run inline instead of in a worker thread, so virtual time is
        # deterministic: `settle` alone lets the monitor reach its next sleep.
        self._to_thread = asyncio.to_thread
        asyncio.to_thread = _inline_to_thread
        self.task = asyncio.ensure_future(self.runner.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        try:
            async with asyncio.timeout(BOUND):
                await self.runner.close()
                await asyncio.wait({self.task}, timeout=BOUND)
        finally:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            asyncio.to_thread = self._to_thread
        if exc == (None, None, None):
            assert not self.launcher.alive, "a browser outlived its runner"
