"""The daemon as a child subreaper: orphans of a browser tree are re-parented to us and reaped.

When a browser dies abruptly its helpers (crashpad, utilities, renderers) are orphaned. As a
subreaper the daemon inherits them instead of init, so they can be killed and reaped rather than
lingering as zombies. Only pids that are NOT our own spawned browsers are reaped here: those are
reaped by their pidfd watcher, which must see their exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
from pathlib import Path

import structlog

from wasupd.supervision.process import OWN_CHILDREN

log = structlog.get_logger("wasupd.reaper")

PR_SET_CHILD_SUBREAPER = 36
INTERVAL = 1.0


def become_subreaper() -> bool:
    """prctl(PR_SET_CHILD_SUBREAPER, 1); False where the kernel refuses."""
    libc = ctypes.CDLL(None, use_errno=True)
    ok = bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    if not ok:
        log.warning("subreaper_unavailable", errno=ctypes.get_errno())
    return ok


def child_pids() -> set[int]:
    """Direct children of this process (every thread's), from /proc."""
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


def reap_orphans() -> list[int]:
    """Reap exited children that are not our own browsers; the pids reaped."""
    reaped = []
    for pid in child_pids() - OWN_CHILDREN:
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                reaped.append(pid)
    return reaped


class OrphanReaper:
    """Reaps adopted orphans once a second (cheap: one /proc read per thread)."""

    async def run(self) -> None:
        """Loop until cancelled."""
        while True:
            await asyncio.sleep(INTERVAL)
            reaped = reap_orphans()
            if reaped:
                log.debug("orphans_reaped", pids=reaped)
