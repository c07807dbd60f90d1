"""Anti-ban pacing: may this session send now, or must it wait — until when, and why.

Pure: the decision is computed from the session's send times (read from the store, so limits
survive restarts), the number's link date, the config, a clock reading and the pause drawn after
the last send. The pause is drawn once per send (`draw_gap`) and then held: drawing it again at
every look would bias the pauses towards `jitter_max`.
"""

from __future__ import annotations

import dataclasses
import random
import time
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from wasupd.config import SendConfig
from wasupd.errors import InvalidArgument

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Decision:
    """`wait_until` <= now means send now; otherwise `reason` says which rule holds it back."""

    wait_until: float
    reason: str


def daily_cap(cfg: SendConfig, linked_at: float | None, now: float) -> int:
    """The day limit: the smaller of per_day and the cap for the number's age (0: no cap)."""
    age_days = (now - linked_at) / DAY if linked_at else 0.0
    if age_days < 7:
        cap = cfg.new_number_per_day
    elif age_days < 30:
        cap = cfg.young_number_per_day
    else:
        cap = cfg.old_number_per_day
    if not cap or not cfg.per_day:
        return cap or cfg.per_day
    return min(cfg.per_day, cap)


def draw_gap(cfg: SendConfig, rng: random.Random) -> float:
    """The random pause to keep after a send, uniform in [jitter_min, jitter_max]."""
    if cfg.jitter_max <= 0:
        return 0.0
    return rng.uniform(cfg.jitter_min, max(cfg.jitter_min, cfg.jitter_max))


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.strip().split(":")
    return int(hours) * 60 + int(minutes)


def window_wait(window: str, now: float) -> float:
    """Seconds until the local send window `HH:MM-HH:MM` opens (0 inside it, or with no window).

    A window may wrap midnight (`22:00-06:00`).
    """
    if not window:
        return 0.0
    start_s, end_s = window.split("-")
    start, end = _minutes(start_s), _minutes(end_s)
    t = time.localtime(now)
    minute = t.tm_hour * 60 + t.tm_min
    inside = start <= minute < end if start <= end else (minute >= start or minute < end)
    if inside:
        return 0.0
    return ((start - minute) % 1440) * 60.0 - t.tm_sec - (now % 1)


def decide(
    cfg: SendConfig, sent: list[float], linked_at: float | None, now: float, gap: float
) -> Decision:
    """Whether to send now; `sent` is this session's send times of the last day, sorted, and
    `gap` the pause drawn after the last of them."""
    if not cfg.pacing:
        return Decision(now, "")
    wait = window_wait(cfg.window, now)
    if wait > 0:
        return Decision(now + wait, f"outside the send window {cfg.window} (local time)")
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
    if sent and now < sent[-1] + gap:
        return Decision(sent[-1] + gap, "pause between messages")
    return Decision(now, "")


_OVERRIDABLE = {f.name for f in dataclasses.fields(SendConfig)} - {"max_text_bytes"}


def with_overrides(base: SendConfig, overrides: dict[str, Any] | None) -> SendConfig:
    """`base` with a session's `send` option applied; InvalidArgument names a bad key."""
    if not overrides:
        return base
    unknown = sorted(set(overrides) - _OVERRIDABLE)
    if unknown:
        raise InvalidArgument(
            f"unknown send option {unknown[0]!r} (known: {', '.join(sorted(_OVERRIDABLE))})"
        )
    cfg = dataclasses.replace(base, **overrides)
    check(cfg)
    return cfg


def check(cfg: SendConfig) -> None:
    """Reject values pacing cannot work with (negative limits, a malformed window)."""
    for key in ("per_minute", "per_hour", "per_day", "jitter_min", "jitter_max"):
        value = getattr(cfg, key)
        if not isinstance(value, int | float) or value < 0:
            raise InvalidArgument(f"send.{key} must be a number >= 0, not {value!r}")
    if cfg.jitter_min > cfg.jitter_max:
        raise InvalidArgument("send.jitter_min must not exceed send.jitter_max")
    if cfg.window:
        try:
            start, end = cfg.window.split("-")
            if not (0 <= _minutes(start) < 1440 and 0 <= _minutes(end) <= 1440):
                raise ValueError(cfg.window)
        except ValueError:
            raise InvalidArgument(
                f"send.window must look like 06:00-22:00, not {cfg.window!r}"
            ) from None
