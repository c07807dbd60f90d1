"""Restart policy: exponential backoff with a cap, reset after a stable period, give up after N in T.

Pure arithmetic on monotonic timestamps, so every rule has a fast unit test.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from wasupd.config import RestartConfig

# The shortest wait between a death and the next start, whatever the config says: a browser
# that exits at once must never turn the runner into a hot loop.
MIN_DELAY = 0.5
# Past this many consecutive deaths the delay is long since capped; keeps factor**k finite.
MAX_EXPONENT = 64


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do after a death: wait `delay` seconds and start again, or give up."""

    give_up: bool
    delay: float
    reason: str


class Backoff:
    """Counts the deaths of one session and decides the next step.

    `consecutive` (deaths since the session was last stable) sets the delay:
    `min(backoff_initial * backoff_factor**k, backoff_max)`, never below `backoff_initial` or
    `MIN_DELAY`. `deaths` (times within `failure_window`) decides when to give up: the
    `max_failures`-th death inside the window ends in `failed` (0 = never give up).
    """

    def __init__(self, config: RestartConfig) -> None:
        self.config = config
        self.consecutive = 0
        self.deaths: deque[float] = deque()

    def note_running_since(self, started: float, now: float) -> None:
        """A session live since `started` for `stable_after` seconds has its consecutive count reset."""
        if self.consecutive and now - started >= self.config.stable_after:
            self.consecutive = 0

    def delay(self) -> float:
        """The wait before the next start, from the consecutive deaths counted so far."""
        c = self.config
        base = max(c.backoff_initial, MIN_DELAY)
        k = min(max(self.consecutive - 1, 0), MAX_EXPONENT)
        return min(base * c.backoff_factor**k, max(c.backoff_max, base))

    def death(self, now: float, cause: str) -> Verdict:
        """Record a death at `now`; the backoff delay, or give up when too many fell in the window."""
        c = self.config
        self.deaths.append(now)
        while self.deaths and now - self.deaths[0] > c.failure_window:
            self.deaths.popleft()
        self.consecutive += 1
        if c.max_failures and len(self.deaths) >= c.max_failures:
            return Verdict(
                True, 0.0, f"{len(self.deaths)} deaths in {c.failure_window:g} s; last: {cause}"
            )
        return Verdict(False, self.delay(), cause)

    def reset(self) -> None:
        """Forget every death (an explicit start by the user)."""
        self.consecutive = 0
        self.deaths.clear()
