"""Chromium process trees: spawn with the DevTools pipe, watch, measure, stop, sweep, reap.

Spawn: `os.posix_spawn` in a new session (own process group), fds 3/4 dup'ed from our pipes,
stdout to /dev/null, stderr to a per-session log. Exit is watched with a pidfd (no global
`waitpid(-1)` that could steal another child's status); only we reap our browsers.

Stop always finishes: DevTools `Browser.close` -> SIGTERM to the group -> SIGKILL after
`timeout` -> sweep every process whose command line holds the profile dir -> reap -> verify.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import structlog

from wasupd.browser import cdp
from wasupd.browser.pipe import PipeTransport
from wasupd.errors import BrowserError
from wasupd.supervision.seams import LaunchRequest, StopReport, TreeUsage
from wasupd.watchdogs.resources import TreeSampler

log = structlog.get_logger("wasupd.process")

# Pids of browsers we spawned and will reap ourselves; the orphan reaper leaves them alone.
OWN_CHILDREN: set[int] = set()


def _spawn(request: LaunchRequest, log_path: Path) -> tuple[int, int, int]:
    """posix_spawn the browser; returns (pid, our write fd, our read fd)."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR)
    logfd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        actions = [
            (os.POSIX_SPAWN_DUP2, devnull, 0),
            (os.POSIX_SPAWN_DUP2, devnull, 1),
            (os.POSIX_SPAWN_DUP2, logfd, 2),
            (os.POSIX_SPAWN_DUP2, to_child_r, 3),
            (os.POSIX_SPAWN_DUP2, from_child_w, 4),
        ]
        env = {**os.environ, **request.env}
        pid = os.posix_spawn(
            request.executable,
            [request.executable, *request.args],
            env,
            file_actions=actions,
            setsid=True,
        )
    except OSError as exc:
        for fd in (to_child_w, from_child_r):
            os.close(fd)
        raise BrowserError(f"cannot start {request.executable}: {exc.strerror}") from exc
    finally:
        for fd in (to_child_r, from_child_w, devnull, logfd):
            os.close(fd)
    OWN_CHILDREN.add(pid)
    return pid, to_child_w, from_child_r


def find_profile_processes(profile_dir: Path) -> list[psutil.Process]:
    """Live processes whose command line names `profile_dir` as their user data dir."""
    marker = f"--user-data-dir={profile_dir}"
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(
                part == marker or part.startswith(marker + "/")
                for part in proc.info["cmdline"] or ()
            ):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def sweep_profile(profile_dir: Path, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process using `profile_dir` and wait for them to go; their pids."""
    procs = find_profile_processes(profile_dir)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(procs, timeout=timeout)
    return [p.pid for p in procs]


class ChromiumHandle:
    """A running browser with its page (implements `seams.BrowserHandle`)."""

    def __init__(self, pid: int, profile_dir: Path, transport: PipeTransport) -> None:
        self._pid = pid
        self._profile_dir = profile_dir
        self.transport = transport
        self.browser: Any = None
        self._page: Any = None
        self.exit_status: int | None = None
        self._exited = asyncio.Event()
        self._pidfd = os.pidfd_open(pid)
        asyncio.get_running_loop().add_reader(self._pidfd, self._on_exit)
        self._sampler = TreeSampler(pid)

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def profile_dir(self) -> Path:
        return self._profile_dir

    @property
    def page(self) -> Any:
        return self._page

    def _on_exit(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        try:
            _, status = os.waitpid(self._pid, 0)
            self.exit_status = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped elsewhere: the status is lost, not the fact
            self.exit_status = -1
        OWN_CHILDREN.discard(self._pid)
        self._exited.set()

    @property
    def exited(self) -> bool:
        """True once the browser process has exited and been reaped."""
        return self._exited.is_set()

    async def wait_exit(self) -> int:
        await self._exited.wait()
        assert self.exit_status is not None
        return self.exit_status

    async def ping(self, timeout: float) -> None:
        if self.exited:
            raise BrowserError(f"browser exited with status {self.exit_status}")
        await cdp.ping(self.browser, timeout)

    def usage(self) -> TreeUsage:
        return self._sampler.sample()

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, sig)

    async def _wait(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._exited.wait()
        return self.exited

    async def stop(self, timeout: float, *, devtools: bool = True) -> StopReport:
        t0 = time.monotonic()
        closed = sent_term = sent_kill = False
        if devtools and not self.exited and not self.transport.closed and self.browser is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(min(2.0, timeout)):
                    await self.browser._connection.send("Browser.close")
                closed = True
            await self._wait(min(3.0, timeout))
        if not self.exited:
            sent_term = True
            self._signal_group(signal.SIGTERM)
            self._signal_group(signal.SIGCONT)  # a stopped (SIGSTOP) process must run to see TERM
            await self._wait(timeout)
        if not self.exited:
            sent_kill = True
            self._signal_group(signal.SIGKILL)
            await self._wait(5.0)
        # Whatever left the group (double-forked helpers) still names the profile dir.
        self._signal_group(signal.SIGKILL)
        swept = await asyncio.to_thread(sweep_profile, self._profile_dir)
        await self.transport.close()
        from wasupd.supervision.reaper import reap_orphans

        reap_orphans()  # helpers orphaned by this browser were re-parented to us: reap them now
        if not self.exited:
            raise BrowserError(f"browser pid {self._pid} survived SIGKILL (stuck in the kernel?)")
        left = await asyncio.to_thread(find_profile_processes, self._profile_dir)
        if left:
            raise BrowserError(f"processes {[p.pid for p in left]} still use {self._profile_dir}")
        report = StopReport(
            exit_status=self.exit_status,
            closed_via_devtools=closed,
            sent_sigterm=sent_term,
            sent_sigkill=sent_kill,
            swept_pids=swept,
            duration=time.monotonic() - t0,
        )
        log.info("browser_stopped", pid=self._pid, **dataclasses.asdict(report))
        return report


class ChromiumLauncher:
    """Starts Chromium trees (implements `seams.Launcher`)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir

    async def launch(self, request: LaunchRequest) -> ChromiumHandle:
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        request.profile_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        pid, wfd, rfd = _spawn(request, self.log_dir / f"{request.session}.log")
        transport = await PipeTransport(wfd, rfd).open()
        handle = ChromiumHandle(pid, request.profile_dir, transport)
        try:
            async with asyncio.timeout(request.start_timeout):
                await self._ready(handle, request)
        except BaseException as exc:
            await asyncio.shield(self._abort(handle))
            if isinstance(exc, TimeoutError):
                raise BrowserError(
                    f"browser not ready within {request.start_timeout:g} s"
                    f" (see {self.log_dir / request.session}.log)"
                ) from None
            if isinstance(exc, BrowserError | asyncio.CancelledError):
                raise
            raise BrowserError(f"browser start failed: {exc}") from exc
        log.info("browser_started", session=request.session, pid=pid)
        return handle

    async def _ready(self, handle: ChromiumHandle, request: LaunchRequest) -> None:
        """Ready = the browser answers over the pipe and our page target exists."""
        exit_wait = asyncio.ensure_future(handle.wait_exit())
        try:
            connect = asyncio.ensure_future(self._connect(handle, request))
            done, _ = await asyncio.wait({exit_wait, connect}, return_when=asyncio.FIRST_COMPLETED)
            if connect in done and connect.exception() is not None:
                # The pipe broke: usually because the browser is exiting. Say so if it is.
                await asyncio.wait({exit_wait}, timeout=2.0)
            if exit_wait.done():
                connect.cancel()
                await asyncio.gather(connect, return_exceptions=True)
                # A fast exit (even 0: another instance took the profile) is a failed start.
                raise BrowserError(
                    f"browser exited with status {handle.exit_status} during start"
                    f" (see {self.log_dir / request.session}.log)"
                )
            connect.result()
        finally:
            exit_wait.cancel()

    async def _connect(self, handle: ChromiumHandle, request: LaunchRequest) -> None:
        handle.browser = await cdp.connect(handle.transport)
        await handle.browser._connection.send("Browser.getVersion")
        handle._page = await cdp.open_page(handle.browser, request.user_agent)

    async def _abort(self, handle: ChromiumHandle) -> None:
        with contextlib.suppress(Exception):
            await handle.stop(2.0)
