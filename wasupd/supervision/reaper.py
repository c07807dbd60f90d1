"""The daemon as a child subreaper: orphans of a browser tree are re-parented to us and reaped.

When a browser dies abruptly its helpers (crashpad, zygotes, renderers, double-forked strays) are
orphaned. As a subreaper the daemon inherits them instead of init, so they can be killed and
reaped rather than lingering as zombies.

Never steal an exit status: a global `waitpid(-1)` would reap asyncio's and our launcher's own
children before their watchers see them. So only *zombies* among our children are reaped, and
only those that are neither our own browsers (`OWN_CHILDREN`, reaped by their pidfd watcher) nor
in the daemon's own session (children the daemon spawns directly, e.g. with asyncio, stay in its
session; browsers and everything they fork live in their own session, see `process._spawn`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal

import psutil
import structlog

from wasupd.watchdogs.resources import OWN_CHILDREN

log = structlog.get_logger("wasupd.reaper")

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
# A missed SIGCHLD (coalesced signals, a handler that could not be installed) is caught by this.
SAFETY_INTERVAL = 30.0
# At most one scan per this many seconds when SIGCHLDs come in a burst (a crash storm).
DEBOUNCE = 0.5


def _prctl(option: int, arg: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(option, arg, 0, 0, 0))


def become_subreaper(on: bool = True) -> bool:
    """prctl(PR_SET_CHILD_SUBREAPER); False (and a warning) where the kernel refuses."""
    ok = _prctl(PR_SET_CHILD_SUBREAPER, int(on)) == 0
    if not ok:
        log.warning("subreaper_unavailable", errno=ctypes.get_errno())
    return ok


def is_subreaper() -> bool:
    """Whether this process is currently a child subreaper."""
    flag = ctypes.c_int(0)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0)
    return bool(flag.value)


def orphan_zombies() -> list[int]:
    """Our zombie children that are adopted orphans (see the module docstring for the rule)."""
    me, my_sid = os.getpid(), os.getsid(0)
    out = []
    for proc in psutil.Process(me).children():
        if proc.pid in OWN_CHILDREN:
            continue
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            if proc.status() == psutil.STATUS_ZOMBIE and os.getsid(proc.pid) != my_sid:
                out.append(proc.pid)
    return out


def any_child_exited() -> bool:
    """Whether some child of ours is a zombie, asked without reaping it (`WNOWAIT`): one
    syscall, where listing our children scans every process in /proc."""
    try:
        return os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # no children at all
        return False


def reap_orphans() -> list[int]:
    """Reap adopted orphans that have exited; the pids reaped."""
    if not any_child_exited():
        return []
    reaped = []
    for pid in orphan_zombies():
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                reaped.append(pid)
    return reaped


class OrphanReaper:
    """Reaps adopted orphans when SIGCHLD says a child exited, and every `SAFETY_INTERVAL`.

    Idle cost is nothing between signals, and a wake-up with no exited child costs one syscall
    (a scan reads /proc/*/stat of every process, so it only runs when some child has exited).
    `run()` belongs in the daemon's TaskGroup; cancelling it removes the SIGCHLD handler.
    """

    def __init__(self, safety_interval: float = SAFETY_INTERVAL) -> None:
        self.safety_interval = safety_interval
        self.reaped_total = 0
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Loop until cancelled."""
        loop = asyncio.get_running_loop()
        handled = False
        try:
            loop.add_signal_handler(signal.SIGCHLD, self._wake.set)
            handled = True
        except (RuntimeError, ValueError, NotImplementedError):  # not the main thread
            log.warning("sigchld_unavailable", fallback=f"scan every {self.safety_interval:g} s")
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.safety_interval):
                        await self._wake.wait()
                self._wake.clear()
                self._scan()
                await asyncio.sleep(DEBOUNCE)
        finally:
            if handled:
                loop.remove_signal_handler(signal.SIGCHLD)

    def _scan(self) -> None:
        reaped = reap_orphans()
        if reaped:
            self.reaped_total += len(reaped)
            log.debug("orphans_reaped", pids=reaped)
