"""The start gate: how many browsers may be starting at once, across all sessions.

Starting Chromium and loading WhatsApp Web is the most CPU-hungry moment of a session's life.
Fifty sessions starting together on two cores (a daemon restart, a host reboot) all miss their
start timeout, die, and retry together: a restart storm that never converges. Measured: with no
gate, 50 full-browser sessions all ended `failed` ("browser not ready within 30 s"). Through the
gate they start in waves, each within its timeout, and the wait in line does not count against
`browser.start_timeout`.
"""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import Callable


def default_limit(configured: int) -> int:
    """`limits.max_concurrent_starts`, or one per CPU core when it is 0."""
    return configured if configured > 0 else max(1, os.cpu_count() or 1)


class StartGate:
    """At most `limit()` holders at once; waiters are served first come, first served.

    `limit` is read on every decision, so a configuration reload applies to the next start.
    A waiter cancelled in line leaves it without taking a slot; one cancelled just after it
    was handed a slot gives that slot back.
    """

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self.active = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        """How many are in line."""
        return sum(not f.done() for f in self._waiters)

    async def acquire(self) -> None:
        """Wait for a slot and take it."""
        if self.active < self._cap() and not self.waiting:
            self.active += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was ours already: hand it on
            raise

    def release(self) -> None:
        """Give a slot back; the next in line (if the limit allows) gets it."""
        self.active -= 1
        self.wake()

    def wake(self) -> None:
        """Hand free slots to waiters (also after the limit was raised)."""
        while self._waiters and self.active < self._cap():
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                self.active += 1

    def _cap(self) -> int:
        return max(1, self._limit())
