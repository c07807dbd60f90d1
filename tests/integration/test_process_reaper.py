"""The orphan reaper: adopted orphans are reaped on SIGCHLD; other children keep their status."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import psutil
import pytest

from tests.helpers.waiting import eventually_async
from wasupd.supervision import reaper

# Forks a grandchild in its own session (as a browser's helper is), exits at once so the
# grandchild is orphaned, and prints the grandchild's pid. The grandchild exits on its own.
ORPHAN_MAKER = """
import os, sys, time
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        time.sleep(float(sys.argv[1]))
        os._exit(3)
    os._exit(0)
os.close(w)
print(os.read(r, 32).decode(), flush=True)
"""


@pytest.fixture
async def running_reaper() -> AsyncIterator[reaper.OrphanReaper]:
    """This process as a subreaper with an OrphanReaper task, as in the daemon."""
    assert reaper.become_subreaper(True)
    assert reaper.is_subreaper()
    r = reaper.OrphanReaper(safety_interval=60)  # only SIGCHLD can wake it within a test
    task = asyncio.ensure_future(r.run())
    try:
        yield r
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        reaper.become_subreaper(False)
        reaper.reap_orphans()


async def test_orphan_is_adopted_and_reaped_on_sigchld(running_reaper: reaper.OrphanReaper) -> None:
    """An orphaned grandchild comes to us; when it exits, SIGCHLD wakes the reaper, which reaps it
    long before its 60 s safety scan: no zombie remains."""
    maker = subprocess.run(
        [sys.executable, "-c", ORPHAN_MAKER, "1.0"], capture_output=True, text=True, timeout=10
    )
    orphan = psutil.Process(int(maker.stdout))
    assert orphan.ppid() == os.getpid()  # re-parented to this subreaper, not to init
    # A zombie still exists: only reaping removes it.
    await eventually_async(lambda: not psutil.pid_exists(orphan.pid), 10, "the orphan to be reaped")
    assert running_reaper.reaped_total >= 1


async def test_reaper_leaves_our_own_children_alone(running_reaper: reaper.OrphanReaper) -> None:
    """A child the daemon spawned itself (asyncio, same session) keeps its exit status: the
    reaper running alongside does not steal it."""
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", f"raise SystemExit({n})")
        for n in (5, 6, 7)
    ]
    async with asyncio.timeout(20):
        codes = [await p.wait() for p in procs]
    assert codes == [5, 6, 7]


async def test_exited_child_is_seen_without_being_reaped() -> None:
    """`any_child_exited` peeks: it sees a zombie child, leaves its exit status to its owner,
    and is false again once the owner has reaped it."""
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(7)"])
    await eventually_async(
        psutil.Process(child.pid).status,
        10,
        "the child to exit (a zombie)",
        ok=lambda status: status == psutil.STATUS_ZOMBIE,
        interval=0.01,
    )
    assert reaper.any_child_exited()
    assert reaper.any_child_exited()  # still there: nothing was reaped
    assert child.wait(timeout=5) == 7  # the owner gets the real status
    assert not reaper.any_child_exited()
