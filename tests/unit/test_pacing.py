"""Pacing decisions with an injected clock: limits, jitter bounds, send window, age-based caps."""

from __future__ import annotations

import random
import time

import pytest

from wasupd.config import SendConfig
from wasupd.errors import InvalidArgument
from wasupd.messaging.pacing import DAY, daily_cap, decide, draw_gap, window_wait, with_overrides

NOW = 1_800_000_000.0


def cfg(**kw: object) -> SendConfig:
    return SendConfig(**{"jitter_min": 0.0, "jitter_max": 0.0, **kw})  # type: ignore[arg-type]


def local(hour: int, minute: int = 0) -> float:
    return time.mktime((2026, 11, 25, hour, minute, 0, 0, 0, -1))


def test_per_minute_limit_waits_until_the_oldest_leaves_the_window() -> None:
    """20 sends in the last minute: wait until the first of them is a minute old."""
    sent = [NOW - 50 + i for i in range(20)]
    d = decide(cfg(), sent, None, NOW, 0.0)
    assert d.wait_until == sent[0] + 60 and d.reason == "20 per minute reached"
    assert decide(cfg(), sent[1:], None, NOW, 0.0).wait_until == NOW


def test_hour_and_day_limits() -> None:
    """The hour limit and the day limit each hold back the next send, counted from the history."""
    sent = [NOW - 3000 + i * 5 for i in range(500)]
    d = decide(cfg(per_minute=0), sent, NOW - 90 * DAY, NOW, 0.0)
    assert d.reason == "500 per hour reached" and d.wait_until == sent[0] + 3600
    sent = [NOW - DAY + 10 + i * 100 for i in range(500)]
    d = decide(cfg(per_minute=0, per_hour=0), sent, NOW - 2 * DAY, NOW, 0.0)
    assert d.reason == "500 per day reached" and d.wait_until == sent[0] + DAY
    # The same history on a number linked 100 days ago is far from its 3,000 cap.
    assert decide(cfg(per_minute=0, per_hour=0), sent, NOW - 100 * DAY, NOW, 0.0).wait_until == NOW


def test_daily_cap_grows_with_the_number_age() -> None:
    """New numbers 500/day, 7-30 days 1,500, older 3,000 (never above per_day)."""
    c = SendConfig()
    assert daily_cap(c, NOW - 1 * DAY, NOW) == 500
    assert daily_cap(c, NOW - 10 * DAY, NOW) == 1500
    assert daily_cap(c, NOW - 100 * DAY, NOW) == 3000
    assert daily_cap(SendConfig(per_day=1000), NOW - 100 * DAY, NOW) == 1000
    assert daily_cap(c, None, NOW) == 500  # never linked yet: treated as new
    assert daily_cap(SendConfig(old_number_per_day=0), NOW - 100 * DAY, NOW) == 5000


def test_jitter_stays_within_bounds_and_is_held_once_drawn() -> None:
    """Pauses are uniform in [jitter_min, jitter_max]; a drawn pause is kept at every look."""
    rng = random.Random(3)
    gaps = [draw_gap(SendConfig(), rng) for _ in range(2000)]
    assert min(gaps) >= 3.0 and max(gaps) <= 7.0
    assert min(gaps) < 3.1 and max(gaps) > 6.9  # really spread over the whole range
    assert 4.8 < sum(gaps) / len(gaps) < 5.2  # and not biased to either end
    looks = {decide(SendConfig(), [NOW], None, NOW + t / 10, 4.2).wait_until for t in range(40)}
    assert looks == {NOW + 4.2}
    assert decide(SendConfig(), [NOW], None, NOW + 4.2, 4.2).wait_until == NOW + 4.2  # due


def test_send_window_in_local_time() -> None:
    """Outside 06:00-22:00 local, wait until 06:00; inside, send; a window may wrap midnight."""
    d = decide(cfg(window="06:00-22:00"), [], None, local(3), 0.0)
    assert d.wait_until == local(3) + 3 * 3600 and "send window" in d.reason
    assert decide(cfg(window="06:00-22:00"), [], None, local(12), 0.0).wait_until == local(12)
    assert window_wait("06:00-22:00", local(22, 30)) == 7.5 * 3600
    assert window_wait("22:00-06:00", local(23)) == 0.0
    assert window_wait("22:00-06:00", local(5, 59)) == 0.0
    assert window_wait("22:00-06:00", local(12)) == 10 * 3600


def test_pacing_off_sends_at_once() -> None:
    """send.pacing = false ignores every limit."""
    assert decide(SendConfig(pacing=False), [NOW] * 100, None, NOW, 5.0).wait_until == NOW


def test_per_session_overrides() -> None:
    """A session's `send` option overrides [send]; unknown keys and bad values are refused."""
    base = SendConfig()
    assert with_overrides(base, {"per_minute": 5, "window": "08:00-20:00"}).per_minute == 5
    assert with_overrides(base, None) is base
    with pytest.raises(InvalidArgument, match="unknown send option 'per_week'"):
        with_overrides(base, {"per_week": 1})
    with pytest.raises(InvalidArgument, match=r"send\.window"):
        with_overrides(base, {"window": "8-20"})
    with pytest.raises(InvalidArgument, match="jitter_min"):
        with_overrides(base, {"jitter_min": 9.0})
