"""Fakes for the runner's seams: launcher, browser handle, page driver, profiles, clock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from wasupd.config import Config, parse_config
from wasupd.errors import BrowserError
from wasupd.supervision.runner import SessionOptions, SessionRunner, Transition
from wasupd.supervision.seams import DriverReport, LaunchRequest, Report, StopReport, TreeUsage


class FakeClock:
    """Virtual time: `sleep` waits until a test calls `advance` past its deadline."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sleepers.append((self.now + seconds, fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers in deadline order and letting tasks run."""
        target = self.now + seconds
        while True:
            await settle()
            due = sorted((d, f) for d, f in self.sleepers if d <= target and not f.done())
            if not due:
                break
            deadline, fut = due[0]
            self.now = max(self.now, deadline)
            self.sleepers.remove((deadline, fut))
            fut.set_result(None)
        self.now = target
        await settle()


async def settle(rounds: int = 30) -> None:
    """Let every ready task run (threads for to_thread included)."""
    for _ in range(rounds):
        await asyncio.sleep(0.001)


class FakeHandle:
    """A 'browser' that exits when told, answers pings unless hung, reports a usage sample."""

    def __init__(self, pid: int, profile_dir: Path, log: list[str]) -> None:
        self.pid = pid
        self.profile_dir = profile_dir
        self.page = None
        self.log = log
        self.hung = False
        self.sample = TreeUsage(pss_bytes=100 << 20, fds=100, processes=5)
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

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
        self.crash(0)
        return StopReport(exit_status=0, closed_via_devtools=True)

    def usage(self) -> TreeUsage:
        return self.sample


class FakeLauncher:
    """Hands out FakeHandles; `fail_next` makes the next launches raise."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.handles: list[FakeHandle] = []
        self.fail_next = 0

    async def launch(self, request: LaunchRequest) -> FakeHandle:
        if self.fail_next:
            self.fail_next -= 1
            raise BrowserError("browser exited with status 1 during start")
        h = FakeHandle(100 + len(self.handles), request.profile_dir, self.log)
        self.handles.append(h)
        self.log.append(f"launch:{h.pid}")
        return h


class FakeDriver:
    """Records calls; tests push reports through `report`."""

    def __init__(self) -> None:
        self.report: Report | None = None
        self.probe_error: Exception | None = None
        self.reloads = 0
        self.on_attach: list[DriverReport] = []

    async def attach(self, handle: Any, report: Report) -> None:
        self.report = report
        for r in self.on_attach:
            report(r)

    async def probe(self, timeout: float) -> None:
        if self.probe_error is not None:
            raise self.probe_error

    async def reload(self) -> None:
        self.reloads += 1

    async def detach(self) -> None:
        self.report = None


class FakeProfiles:
    """Records prepare/release/checkpoint in the shared log (for ordering assertions)."""

    def __init__(self, log: list[str], root: Path) -> None:
        self.log = log
        self.root = root
        self.prepare_error: Exception | None = None

    async def prepare(self) -> Path:
        if self.prepare_error is not None:
            raise self.prepare_error
        self.log.append("prepare")
        return self.root

    async def checkpoint(self) -> None:
        self.log.append("checkpoint")

    async def release(self, *, wipe: bool) -> None:
        self.log.append(f"release:wipe={wipe}")

    def sizes(self) -> dict[str, int]:
        return {"live_bytes": 0, "sealed_bytes": 0}


class Harness:
    """A runner wired to fakes, with its transitions collected."""

    def __init__(self, tmp: Path, **config: dict[str, Any]) -> None:
        self.log: list[str] = []
        self.clock = FakeClock()
        self.launcher = FakeLauncher(self.log)
        self.drivers: list[FakeDriver] = []
        self.profiles = FakeProfiles(self.log, tmp)
        self.transitions: list[Transition] = []
        self.reports: list[DriverReport] = []
        self.config: Config = parse_config(config)
        self.runner = SessionRunner(
            "s1",
            config=self.config,
            options=SessionOptions(),
            launcher=self.launcher,  # type: ignore[arg-type]
            driver_factory=self._driver,
            profiles=self.profiles,
            clock=self.clock,
            on_transition=self._on_transition,
            on_report=self._on_report,
            build_request=lambda n, d: LaunchRequest(
                session=n,
                profile_dir=d,
                executable="x",
                args=[],
                url="u",
                user_agent="ua",
                start_timeout=5,
            ),
        )
        self.task: asyncio.Task[None] | None = None

    def _driver(self) -> FakeDriver:
        d = FakeDriver()
        self.drivers.append(d)
        return d

    async def _on_transition(self, t: Transition) -> None:
        self.transitions.append(t)

    async def _on_report(self, name: str, r: DriverReport) -> None:
        self.reports.append(r)

    @property
    def states(self) -> list[str]:
        return [t.to_state.value for t in self.transitions]

    @property
    def driver(self) -> FakeDriver:
        return self.drivers[-1]

    def push(self, kind: str, value: str = "", **data: Any) -> None:
        assert self.driver.report is not None
        self.driver.report(DriverReport(kind=kind, value=value, data=data))  # type: ignore[arg-type]

    async def __aenter__(self) -> Harness:
        self.task = asyncio.ensure_future(self.runner.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.close()
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
