"""Choosing a session for `--from auto`: weighted by remaining capacity and health.

Pure: the caller reads each connected session's recent sends and backlog from the store; this
module turns them into weights and draws one session.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from wasupd.config import SendConfig
from wasupd.messaging.pacing import daily_cap

# Capacity of a session with pacing off: large, so only its backlog tells sessions apart.
UNPACED = 10_000.0
# A session at its limits still gets a little weight: when all are full, messages must wait
# somewhere, and spreading them keeps the wait short.
FLOOR = 0.01


@dataclass(frozen=True, slots=True)
class Candidate:
    """One connected session as the pool sees it."""

    name: str
    remaining: float  # messages it may still send (hour and day limits) minus its backlog
    health: float  # 1.0 healthy; lower after recent send failures


def remaining(
    cfg: SendConfig,
    linked_at: float | None,
    now: float,
    *,
    sent_hour: int,
    sent_day: int,
    backlog: int,
) -> float:
    """How many more messages the session can take before its hour or day limit."""
    if not cfg.pacing:
        return UNPACED - backlog
    room = UNPACED
    if cfg.per_hour:
        room = min(room, cfg.per_hour - sent_hour)
    cap = daily_cap(cfg, linked_at, now)
    if cap:
        room = min(room, cap - sent_day)
    return room - backlog


def health(recent_failures: int) -> float:
    """1.0 with no recent failures, halving roughly with each one."""
    return 1.0 / (1.0 + recent_failures)


def choose(candidates: list[Candidate], rng: random.Random) -> str:
    """Draw one session, each with probability proportional to remaining x health."""
    weights = [max(c.remaining, FLOOR) * max(c.health, FLOOR) for c in candidates]
    return rng.choices([c.name for c in candidates], weights=weights)[0]
