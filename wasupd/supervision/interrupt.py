"""Interruptible waits: the runner's loop waits on work that any new request cuts short.

Requests ring the `Doorbell`; each ring moves its count. A wait that began at count `since` ends
as soon as the count moved, even if the ring came before the wait started (nothing is lost
between taking `since` and awaiting). `race` runs one task against the bell and other futures
(a browser's exit); `companions` runs helper tasks for exactly the length of a block.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any


class Doorbell:
    """Counts requests and wakes whoever waits for the next one."""

    def __init__(self) -> None:
        self.count = 0
        self._rung = asyncio.Event()

    def ring(self) -> None:
        """A request came in: every wait that began before it ends."""
        self.count += 1
        # A fresh event per ring: a waiter never clears what another waiter still needs.
        rung, self._rung = self._rung, asyncio.Event()
        rung.set()

    async def wait(self, since: int) -> None:
        """Return once the count moved past `since` (at once if it already has)."""
        if self.count == since:
            await self._rung.wait()

    async def race(self, task: asyncio.Future[Any], since: int, *also: asyncio.Future[Any]) -> None:
        """Await `task` until it ends, a ring comes after `since` or one of `also` is done.

        A task still running then is cancelled and awaited, so on return it is always done
        (look at `cancelled()`, `exception()`, `result()`); so it is when the caller is
        cancelled.
        """
        try:
            if self.count == since:  # else the request is already in: the task never runs
                async with companions(self.wait(since)) as (bell,):
                    await asyncio.wait({task, bell, *also}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def companions(
    *coros: Coroutine[Any, Any, Any],
) -> AsyncIterator[tuple[asyncio.Task[Any], ...]]:
    """Run `coros` as tasks for the length of the block; on exit they are cancelled and awaited
    (their failures are theirs to log: a companion never fails the block)."""
    tasks = tuple(asyncio.ensure_future(c) for c in coros)
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
