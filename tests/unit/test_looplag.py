"""LoopLag: the event loop's wake-up delay, latest and worst over a window."""

from __future__ import annotations

import asyncio
import time

from tests.helpers.waiting import eventually_async
from wasupd.looplag import LoopLag


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_worst_lag_is_kept_for_the_window_then_forgotten() -> None:
    """A stall is reported as the worst until `window` seconds later, whatever came after it."""
    clock = FakeClock()
    lag = LoopLag(window=60.0, clock=clock)
    lag.record(0.250)
    clock.now += 10
    lag.record(0.002)
    assert lag.summary() == {"last_ms": 2.0, "max_ms": 250.0, "window_s": 60.0}
    clock.now += 55  # the stall is now 65 s old, the small lag 55 s
    assert lag.worst() == 0.002
    clock.now += 10
    assert lag.worst() == 0.0


def test_a_wake_up_before_time_counts_as_no_lag() -> None:
    """Clock granularity can make a sleep look early: that is 0, not a negative lag."""
    lag = LoopLag(clock=FakeClock())
    lag.record(-0.0005)
    assert lag.last == 0.0
    assert lag.worst() == 0.0


def test_the_record_stays_small_over_a_long_run() -> None:
    """Steadily falling or equal lags keep only what can still be the maximum."""
    clock = FakeClock()
    lag = LoopLag(window=60.0, clock=clock)
    for i in range(10_000):
        clock.now += 0.5
        lag.record(0.001 * (i % 3))
    assert len(lag._recent) <= 3


async def test_a_blocked_loop_shows_as_lag() -> None:
    """A callback that holds the real loop for 200 ms makes the probe's next wake-up that late."""
    lag = LoopLag(interval=0.05)
    probe = asyncio.create_task(lag.run())
    try:
        await asyncio.sleep(0)  # the probe is asleep now
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.2:  # hold the loop: the stall being measured
            pass
        await eventually_async(lag.worst, 5, "the probe to see the stall", interval=0.01)
    finally:
        probe.cancel()
    assert 0.14 <= lag.worst() < 2.0
