"""The restart policy's arithmetic: exponential delays, cap, floor, reset, give-up window."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wasupd.config import RestartConfig
from wasupd.supervision.backoff import MIN_DELAY, Backoff


def policy(**kw: float) -> Backoff:
    return Backoff(RestartConfig(**{"max_failures": 0, **kw}))  # type: ignore[arg-type]


def test_delays_double_up_to_the_cap() -> None:
    """Consecutive deaths wait initial * factor**k, capped at backoff_max."""
    b = policy(backoff_initial=1, backoff_factor=2, backoff_max=5)
    assert [b.death(float(t), "x").delay for t in range(5)] == [1, 2, 4, 5, 5]


def test_stable_period_resets_the_consecutive_count() -> None:
    """After stable_after seconds live, the next death waits backoff_initial again."""
    b = policy(backoff_initial=1, backoff_factor=2, stable_after=100)
    for t in range(3):
        b.death(float(t), "x")
    b.note_running_since(10.0, 109.0)
    assert b.consecutive == 3
    b.note_running_since(10.0, 110.0)
    assert b.consecutive == 0 and b.death(111.0, "x").delay == 1


def test_gives_up_at_max_failures_within_the_window() -> None:
    """The max_failures-th death inside failure_window gives up, naming count, window and cause."""
    b = Backoff(RestartConfig(max_failures=3, failure_window=60))
    assert not b.death(0.0, "a").give_up
    assert not b.death(10.0, "b").give_up
    v = b.death(20.0, "browser exited with status -9")
    assert v.give_up and v.reason == "3 deaths in 60 s; last: browser exited with status -9"


def test_deaths_older_than_the_window_are_forgotten() -> None:
    """Deaths spaced wider than failure_window never give up."""
    b = Backoff(RestartConfig(max_failures=2, failure_window=60))
    assert not any(b.death(t * 61.0, "x").give_up for t in range(10))


def test_zero_max_failures_never_gives_up() -> None:
    """max_failures = 0 restarts forever (with capped delays)."""
    b = policy(backoff_max=30)
    verdicts = [b.death(float(t), "x") for t in range(100)]
    assert not any(v.give_up for v in verdicts) and verdicts[-1].delay == 30


def test_floor_prevents_a_hot_loop() -> None:
    """backoff_initial 0 still waits MIN_DELAY, and keeps growing from there."""
    b = policy(backoff_initial=0, backoff_factor=2, backoff_max=10)
    assert [b.death(float(t), "x").delay for t in range(3)] == [MIN_DELAY, 2 * MIN_DELAY, 2.0]


def test_reset_forgets_everything() -> None:
    """An explicit start (reset) clears the window and the consecutive count."""
    b = Backoff(RestartConfig(max_failures=2))
    b.death(0.0, "x")
    b.reset()
    assert not b.death(1.0, "x").give_up and b.consecutive == 1


def test_thousands_of_deaths_do_not_overflow() -> None:
    """A huge consecutive count keeps the delay at the cap instead of overflowing factor**k."""
    b = policy(backoff_factor=1000, backoff_max=300)
    b.consecutive = 10_000
    assert b.death(0.0, "x").delay == 300


@settings(deadline=None)
@given(
    initial=st.floats(0, 100),
    factor=st.floats(1, 10),
    cap=st.floats(0, 1000),
    deaths=st.integers(1, 200),
)
def test_delay_always_within_floor_and_cap(
    initial: float, factor: float, cap: float, deaths: int
) -> None:
    """Any config: every delay is >= max(initial, MIN_DELAY) floor and <= the (floored) cap."""
    b = policy(backoff_initial=initial, backoff_factor=factor, backoff_max=cap)
    floor = max(initial, MIN_DELAY)
    delays = [b.death(float(t), "x").delay for t in range(deaths)]
    assert all(floor <= d <= max(cap, floor) for d in delays)
    assert delays == sorted(delays)  # never shrinks without a reset
