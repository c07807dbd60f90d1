"""Event-loop lag: how late the daemon's loop wakes a task that asked to sleep.

Everything the daemon does (RPC, every session's monitor, the senders) shares one asyncio
loop, so a callback that blocks it delays them all. `LoopLag.run` sleeps `interval` over and
over and records by how much each wake-up overshot; the figure is what any timer of the daemon
suffered at that moment. `daemon.status` (`loop_lag`) and the metrics
(`wasupd_event_loop_lag_seconds`) report the latest overshoot and the worst one in the last
`window` seconds, so a scrape between two stalls still sees them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

INTERVAL = 0.5  # seconds between probes: cheap (one timer), fine enough for stalls of 10s of ms
WINDOW = 60.0  # the worst lag is kept this long: longer than a usual scrape interval


class LoopLag:
    """The loop's lag, probed by `run()` (a long-lived loop the daemon keeps running)."""

    def __init__(
        self,
        interval: float = INTERVAL,
        window: float = WINDOW,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval, self.window = interval, window
        self._clock, self._sleep = clock, sleep
        self.last = 0.0  # seconds the latest wake-up was late
        self._recent: deque[tuple[float, float]] = deque()  # (when, lag), oldest first

    async def run(self) -> None:
        """Probe until cancelled."""
        while True:
            asked = self._clock()
            await self._sleep(self.interval)
            self.record(self._clock() - asked - self.interval)

    def record(self, lag: float) -> None:
        """Note one wake-up that came `lag` seconds late (a negative one counts as on time)."""
        now = self._clock()
        self.last = max(0.0, lag)
        # Only a sample worse than every later one can be the window's maximum: keep the
        # deque decreasing, so it stays a few entries long however long the daemon runs.
        while self._recent and self._recent[-1][1] <= self.last:
            self._recent.pop()
        self._recent.append((now, self.last))
        while self._recent[0][0] < now - self.window:
            self._recent.popleft()

    def worst(self) -> float:
        """The largest lag in the last `window` seconds (0 before the first probe)."""
        now = self._clock()
        while self._recent and self._recent[0][0] < now - self.window:
            self._recent.popleft()
        return self._recent[0][1] if self._recent else 0.0

    def summary(self) -> dict[str, float]:
        """What `daemon.status` reports: `last_ms`, `max_ms` (over `window_s`), `window_s`."""
        return {
            "last_ms": round(self.last * 1000, 3),
            "max_ms": round(self.worst() * 1000, 3),
            "window_s": self.window,
        }
