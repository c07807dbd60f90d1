"""Pacing decisions with an injected clock: limits, jitter bounds, send window, age-based caps."""

from __future__ import annotations

import random
import time

from wasupd.config import SendConfig
from wasupd.messaging.pacing import DAY, daily_cap, decide

NOW = 1_800_000_000.0


def cfg(**kw: object) -> SendConfig:
    return SendConfig(**{"jitter_min": 0.0, "jitter_max": 0.0, **kw})  # type: ignore[arg-type]


def test_per_minute_limit_waits_until_the_oldest_leaves_the_window() -> None:
    """20 sends in the last minute: wait until the first of them is a minute old."""
    sent = [NOW - 50 + i for i in range(20)]
    d = decide(cfg(), sent, None, NOW, random.Random(0))
    assert d.wait_until == sent[0] + 60 and d.reason == "20 per minute reached"


def test_hour_and_day_limits() -> None:
    """The hour limit and the day limit each hold back the next send."""
    sent = [NOW - 3000 + i * 5 for i in range(500)]
    assert (
        decide(cfg(per_minute=0), sent, NOW - 90 * DAY, NOW, random.Random(0)).reason
        == "500 per hour reached"
    )
    sent = [NOW - DAY + 10 + i * 100 for i in range(500)]
    d = decide(cfg(per_minute=0, per_hour=0), sent, NOW - 2 * DAY, NOW, random.Random(0))
    assert d.reason == "500 per day reached" and d.wait_until == sent[0] + DAY


def test_daily_cap_grows_with_the_number_age() -> None:
    """New numbers 500/day, 7-30 days 1,500, older 3,000 (never above per_day)."""
    c = SendConfig()
    assert daily_cap(c, NOW - 1 * DAY, NOW) == 500
    assert daily_cap(c, NOW - 10 * DAY, NOW) == 1500
    assert daily_cap(c, NOW - 100 * DAY, NOW) == 3000
    assert daily_cap(SendConfig(per_day=1000), NOW - 100 * DAY, NOW) == 1000
    assert daily_cap(c, None, NOW) == 500


def test_jitter_stays_within_bounds() -> None:
    """The pause after a send is uniform within [jitter_min, jitter_max]."""
    rng = random.Random(3)
    gaps = [decide(SendConfig(), [NOW], None, NOW, rng).wait_until - NOW for _ in range(500)]
    assert min(gaps) >= 3.0 and max(gaps) <= 7.0
    assert max(gaps) - min(gaps) > 3.0  # really spread, not constant


def test_send_window_in_local_time() -> None:
    """Outside 06:00-22:00 local, wait until 06:00; inside, send."""
    base = time.mktime((2026, 11, 25, 3, 0, 0, 0, 0, -1))
    d = decide(cfg(window="06:00-22:00"), [], None, base, random.Random(0))
    assert d.wait_until == base + 3 * 3600 and "send window" in d.reason
    noon = time.mktime((2026, 11, 25, 12, 0, 0, 0, 0, -1))
    assert decide(cfg(window="06:00-22:00"), [], None, noon, random.Random(0)).wait_until == noon


def test_pacing_off_sends_at_once() -> None:
    """send.pacing = false ignores every limit."""
    assert (
        decide(SendConfig(pacing=False), [NOW] * 100, None, NOW, random.Random(0)).wait_until == NOW
    )
