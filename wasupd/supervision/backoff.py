"""Restart policy: exponential backoff with a cap, reset after a stable period, give up after N in T.

Pure arithmetic on monotonic timestamps, so every rule has a fast unit test.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from wasupd.config import RestartConfig


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do after a death: wait `delay` seconds and start again, or give up."""

    give_up: bool
    delay: float
    reason: str


class Backoff:
    """Counts deaths of one session and decides the next step."""

    def __init__(self, config: RestartConfig) -> None:
        self.config = config
        self.consecutive = 0
        self.deaths: deque[float] = deque()

    def note_running_since(self, started: float, now: float) -> None:
        """A session live for `stable_after` seconds has its consecutive count reset."""
        if self.consecutive and now - started >= self.config.stable_after:
            self.consecutive = 0

    def death(self, now: float, cause: str) -> Verdict:
        """Record a death at `now`; backoff delay, or give up when too many fell in the window."""
        c = self.config
        self.deaths.append(now)
        while self.deaths and now - self.deaths[0] > c.failure_window:
            self.deaths.popleft()
        if c.max_failures and len(self.deaths) >= c.max_failures:
            return Verdict(
                True,
                0.0,
                f"{len(self.deaths)} deaths in {c.failure_window:g} s; last: {cause}",
            )
        delay = min(c.backoff_initial * c.backoff_factor**self.consecutive, c.backoff_max)
        self.consecutive += 1
        # Never a hot loop, even with backoff_initial = 0.
        return Verdict(False, max(delay, 0.5), cause)

    def reset(self) -> None:
        """Forget every death (an explicit start by the user)."""
        self.consecutive = 0
        self.deaths.clear()
