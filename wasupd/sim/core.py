"""What every part of the simulated server shares: the world, the pages, faults, timers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from wasupd.sim.conflicts import Conflicts
from wasupd.sim.faults import Faults
from wasupd.sim.media import MediaHost
from wasupd.sim.model import Account, World
from wasupd.sim.pages import PageConn
from wasupd.sim.timing import Timings


class Core:
    """Shared state of one simulator; owns its timers (cancelled by `close()`)."""

    def __init__(self, timings: Timings, *, page_weight_mib: int, auto_read: bool) -> None:
        self.t = timings
        self.page_weight_mib = page_weight_mib
        self.auto_read = auto_read
        self.world = World()
        self.media = MediaHost()  # uploaded files, by hash (§4f)
        self.pages: set[PageConn] = set()
        self.faults = Faults()
        self.conflicts = Conflicts()  # pages that met another page of their device
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def later(self, delay: float, action: Callable[[], Awaitable[object]]) -> None:
        """Run `action` after `delay` seconds, unless the simulator closes first."""

        async def run() -> None:
            await asyncio.sleep(delay)
            await action()

        self.spawn(run())

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `coro` as a task this simulator owns (cancelled by `close()`)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def changed(self) -> None:
        """Wake everyone waiting on a condition (a link, a delivery, a logout...)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until `predicate()` holds (re-checked on every change), at most `timeout` s."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._changed.wait()
        return predicate()

    def live_pages(self, acc: Account) -> list[PageConn]:
        """Pages linked to `acc` that the server still talks to (not stalled, not in a
        forced state such as CONFLICT or TIMEOUT)."""
        return [p for p in self.pages if p.account is acc and self.faults.live(p)]

    def scoped_pages(self, scope: str) -> list[PageConn]:
        """Pages a fault of `scope` covers."""
        return [p for p in self.pages if self.faults.applies(scope, p)]

    async def drop(self, pages: list[PageConn], code: int, reason: str) -> None:
        """Close these pages' sockets (all at once: a hung page must not delay the others)."""
        closing = [p.ws.close(code=code, message=reason.encode()) for p in pages]
        await asyncio.gather(*closing, return_exceptions=True)

    async def close(self) -> None:
        """Cancel every pending timer and wait for them to finish."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
