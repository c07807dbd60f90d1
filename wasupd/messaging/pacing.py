"""Anti-ban pacing: may this session send now, or must it wait — until when, and why.

Pure: the decision is computed from the session's send times (read from the store, so limits
survive restarts), the number's link date, the config, a clock reading and a random source.
"""

from __future__ import annotations

import random
import time
from bisect import bisect_left
from dataclasses import dataclass

from wasupd.config import SendConfig

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Decision:
    """`wait_until` <= now means send now."""

    wait_until: float
    reason: str


def daily_cap(cfg: SendConfig, linked_at: float | None, now: float) -> int:
    """The day limit: the smaller of per_day and the cap for the number's age."""
    age_days = (now - linked_at) / DAY if linked_at else 0.0
    if age_days < 7:
        cap = cfg.new_number_per_day
    elif age_days < 30:
        cap = cfg.young_number_per_day
    else:
        cap = cfg.old_number_per_day
    return min(cfg.per_day, cap) if cfg.per_day else cap


def _window_wait(cfg: SendConfig, now: float) -> float:
    """Seconds until the local send window opens (0 inside it)."""
    if not cfg.window:
        return 0.0
    start_s, end_s = cfg.window.split("-")
    t = time.localtime(now)
    minute = t.tm_hour * 60 + t.tm_min
    start = int(start_s[:2]) * 60 + int(start_s[3:])
    end = int(end_s[:2]) * 60 + int(end_s[3:])
    inside = start <= minute < end if start <= end else (minute >= start or minute < end)
    if inside:
        return 0.0
    return ((start - minute) % 1440) * 60.0 - t.tm_sec


def decide(
    cfg: SendConfig, sent: list[float], linked_at: float | None, now: float, rng: random.Random
) -> Decision:
    """Whether to send now; `sent` is this session's send times of the last day, sorted."""
    if not cfg.pacing:
        return Decision(now, "")
    wait = _window_wait(cfg, now)
    if wait > 0:
        return Decision(now + wait, f"outside the send window {cfg.window}")
    for span, limit, label in (
        (60.0, cfg.per_minute, "minute"),
        (3600.0, cfg.per_hour, "hour"),
        (DAY, daily_cap(cfg, linked_at, now), "day"),
    ):
        if not limit:
            continue
        recent = sent[bisect_left(sent, now - span) :]
        if len(recent) >= limit:
            return Decision(recent[len(recent) - limit] + span, f"{limit} per {label} reached")
    if sent and cfg.jitter_max > 0:
        gap = rng.uniform(cfg.jitter_min, cfg.jitter_max)
        if now < sent[-1] + gap:
            return Decision(sent[-1] + gap, "pause between messages")
    return Decision(now, "")
