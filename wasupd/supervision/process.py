"""Chromium process trees: spawn with the DevTools pipe, watch, measure, stop, sweep, reap.

Spawn: `os.posix_spawn` in a new session (own process group), fds 3/4 dup'ed from our pipes,
stdout to /dev/null, stderr to a per-session log. Exit is watched with a pidfd (no global
`waitpid(-1)` that could steal another child's status); only we reap our browsers.

Stop always finishes: DevTools `Browser.close` -> SIGTERM (+SIGCONT) to the group -> SIGKILL
after `timeout` -> sweep every process whose command line holds the profile dir -> reap ->
verify. Worst case it takes `timeout + STOP_MARGIN` seconds, even when DevTools hangs.
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

from wasupd.devtools import cdp, memory
from wasupd.devtools.pipe import PipeTransport
from wasupd.errors import BrowserError
from wasupd.supervision import reaper
from wasupd.supervision.seams import LaunchRequest, StopReport, TreeUsage
from wasupd.watchdogs.resources import OWN_CHILDREN, TreeSampler, profile_processes

log = structlog.get_logger("wasupd.process")

CLOSE_TIMEOUT = 2.0  # Browser.close over DevTools: a healthy browser answers at once
CLOSE_GRACE = 3.0  # after Browser.close answered: time to exit before SIGTERM
KILL_WAIT = 5.0  # after SIGKILL; only a process stuck in the kernel (D state) takes longer
SWEEP_WAIT = 5.0
REAP_WAIT = 2.0  # for the group's last zombies to be reaped (by us as subreaper, or by init)
STOP_MARGIN = CLOSE_TIMEOUT + CLOSE_GRACE + KILL_WAIT + SWEEP_WAIT + REAP_WAIT


def _spawn(request: LaunchRequest, log_path: Path) -> tuple[int, int, int]:
    """posix_spawn the browser; returns (pid, our write fd, our read fd)."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    for fd in (to_child_w, from_child_r):
        os.set_inheritable(fd, False)  # our ends must not leak into this or any other child
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
        pid = os.posix_spawn(
            request.executable,
            [request.executable, *request.args],
            {**os.environ, **request.env},
            file_actions=actions,
            setsid=True,  # own session and group: one killpg reaches the tree
        )
    except OSError as exc:
        for fd in (to_child_w, from_child_r):
            os.close(fd)
        raise BrowserError(
            f"cannot start {request.executable}: {exc.strerror}; check browser.executable"
        ) from exc
    finally:
        for fd in (to_child_r, from_child_w, devnull, logfd):
            os.close(fd)
    OWN_CHILDREN.add(pid)
    return pid, to_child_w, from_child_r


def find_profile_processes(profile_dir: Path) -> list[psutil.Process]:
    """Live processes whose command line names `profile_dir` as their user data dir."""
    return profile_processes(profile_dir)


def sweep_profile(profile_dir: Path, timeout: float = SWEEP_WAIT) -> list[int]:
    """SIGKILL every process using `profile_dir`, wait up to `timeout` for them to go (reaping
    those that are our children, except our own browsers, whose watchers reap them); their pids.
    """
    procs = find_profile_processes(profile_dir)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs([p for p in procs if p.pid not in OWN_CHILDREN], timeout=timeout)
    return [p.pid for p in procs]


class ChromiumHandle:
    """A running browser with its page (implements `seams.BrowserHandle`).

    Must be created on the event loop; it watches the browser's exit through a pidfd.
    """

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
        self._sampler = TreeSampler(pid, profile_dir)

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
            _, status = os.waitpid(self._pid, 0)  # readable pidfd: it has exited, no blocking
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
        """Wait for the browser's exit; its status (negative: killed by that signal)."""
        await self._exited.wait()
        assert self.exit_status is not None
        return self.exit_status

    async def ping(self, timeout: float) -> None:
        """`Browser.getVersion` round trip; `BrowserError` when exited or past `timeout`."""
        if self.exited:
            raise BrowserError(f"browser exited with status {self.exit_status}")
        await cdp.ping(self.browser, timeout)

    def usage(self) -> TreeUsage:
        """PSS, fds, processes and CPU of the tree (cheap: see `TreeSampler`)."""
        return self._sampler.sample()

    def usage_is_quick(self) -> bool:
        """See `BrowserHandle.usage_is_quick`."""
        return self._sampler.quick()

    async def reclaim(self, timeout: float) -> TreeUsage:
        """See `BrowserHandle.reclaim` (`wasupd.devtools.memory` says what each step frees)."""
        if self.exited or self._page is None:
            raise BrowserError(f"browser exited with status {self.exit_status}")
        await memory.reclaim(self.browser, self._page, timeout)
        # Exact: the estimate between exact samples follows private memory, which is what a
        # reclaim moves, but the hard limit is judged on this sample and must not be a guess.
        return await asyncio.to_thread(self._sampler.sample, exact=True)

    def _signal_group(self, sig: int) -> None:
        # The group id stays reserved while any member lives, so this cannot hit a stranger.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, sig)

    async def _wait(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._exited.wait()
        return self.exited

    async def _close_via_devtools(self, timeout: float) -> bool:
        """`Browser.close`; True when the browser took it (answered in time) and then exited."""
        if self.exited or self.transport.closed or self.browser is None:
            return False
        try:
            async with asyncio.timeout(min(CLOSE_TIMEOUT, timeout)):
                await self.browser._connection.send("Browser.close")
        except Exception:  # hung (timeout) or already going away (pipe closed)
            return False
        return await self._wait(min(CLOSE_GRACE, timeout))

    async def _escalate(self, timeout: float) -> tuple[bool, bool]:
        """SIGTERM (+SIGCONT, so a stopped browser sees it), then SIGKILL; (sent TERM, sent KILL)."""
        if self.exited:
            return False, False
        self._signal_group(signal.SIGTERM)
        self._signal_group(signal.SIGCONT)
        if await self._wait(timeout):
            return True, False
        self._signal_group(signal.SIGKILL)
        await self._wait(KILL_WAIT)
        return True, True

    async def stop(self, timeout: float, *, devtools: bool = True) -> StopReport:
        """Stop the whole tree (see the module docstring); raises `BrowserError` only if a
        process survives SIGKILL. Safe to call again, and after the browser died by itself."""
        t0 = time.monotonic()
        closed = devtools and await self._close_via_devtools(timeout)
        sent_term, sent_kill = await self._escalate(timeout)
        # Helpers left in the group after the browser died (kill -9 of the browser), then
        # whatever left the group (double-forked strays) but still names the profile dir.
        self._signal_group(signal.SIGKILL)
        swept = await asyncio.to_thread(sweep_profile, self._profile_dir)
        await self.transport.close()
        await self._reap_group()
        await self._verify()
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

    async def _reap_group(self) -> None:
        """Reap the group's orphaned helpers (re-parented to us, the subreaper) until the group
        is empty: a zombie still counts as a member. Bounded by `REAP_WAIT`."""
        deadline = time.monotonic() + REAP_WAIT
        while True:
            await asyncio.to_thread(reaper.reap_orphans)
            try:
                os.killpg(self._pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.02)  # a helper's exit is being reported right now

    async def _verify(self) -> None:
        if not self.exited:
            raise BrowserError(
                f"browser pid {self._pid} survived SIGKILL (stuck in the kernel, D state?);"
                " check `cat /proc/{self._pid}/stack`"
            )
        left = await asyncio.to_thread(find_profile_processes, self._profile_dir)
        if left:
            raise BrowserError(
                f"processes {[p.pid for p in left]} still use {self._profile_dir} after SIGKILL"
            )


class ChromiumLauncher:
    """Starts Chromium trees (implements `seams.Launcher`)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir

    def log_path(self, session: str) -> Path:
        """Where the browser's stderr of `session` goes (overwritten at each start)."""
        return self.log_dir / f"{session}.log"

    async def launch(self, request: LaunchRequest) -> ChromiumHandle:
        """Spawn and wait for readiness within `start_timeout`; on any failure (timeout, exit,
        cancellation) the tree is killed and reaped before the error propagates."""
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        request.profile_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        pid, wfd, rfd = _spawn(request, self.log_path(request.session))
        handle = ChromiumHandle(pid, request.profile_dir, PipeTransport(wfd, rfd))
        try:
            async with asyncio.timeout(request.start_timeout):
                await handle.transport.open()
                await self._ready(handle, request)
        except BaseException as exc:
            await asyncio.shield(self._abort(handle))
            raise self._start_error(exc, request) from None
        log.info("browser_started", session=request.session, pid=pid)
        return handle

    def _start_error(self, exc: BaseException, request: LaunchRequest) -> BaseException:
        if isinstance(exc, BrowserError) or not isinstance(exc, Exception):
            return exc  # ours already, or a cancellation that must propagate as it is
        where = f"see {self.log_path(request.session)}"
        if isinstance(exc, TimeoutError):
            return BrowserError(
                f"browser not ready within {request.start_timeout:g} s ({where}); raise"
                " browser.start_timeout on a slow or loaded host"
            )
        return BrowserError(f"browser start failed: {exc} ({where})")

    async def _ready(self, handle: ChromiumHandle, request: LaunchRequest) -> None:
        """Ready = the browser answers over the pipe and our page target exists."""
        exit_wait = asyncio.ensure_future(handle.wait_exit())
        connect = asyncio.ensure_future(self._connect(handle, request))
        try:
            done, _ = await asyncio.wait({exit_wait, connect}, return_when=asyncio.FIRST_COMPLETED)
            if connect in done and connect.exception() is not None:
                # The pipe broke: usually because the browser is exiting. Say so if it is.
                await asyncio.wait({exit_wait}, timeout=2.0)
            if exit_wait.done():
                # A fast exit (even 0: another instance took the profile) is a failed start.
                raise BrowserError(
                    f"browser exited with status {handle.exit_status} during start"
                    f" (see {self.log_path(request.session)})"
                )
            connect.result()
        finally:
            for fut in (exit_wait, connect):
                fut.cancel()
            await asyncio.gather(exit_wait, connect, return_exceptions=True)

    async def _connect(self, handle: ChromiumHandle, request: LaunchRequest) -> None:
        handle.browser = await cdp.connect(handle.transport)
        await handle.browser._connection.send("Browser.getVersion")
        handle._page = await cdp.open_page(handle.browser, request.user_agent)

    async def _abort(self, handle: ChromiumHandle) -> None:
        with contextlib.suppress(Exception):
            await handle.stop(2.0, devtools=False)
