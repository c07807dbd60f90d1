"""Planning a campaign: how many recipients each number takes, and when each is sent.

Pure (the caller reads the numbers' limits and recent sends from the store):

- A number's *capacity* is how many messages it may send per day: the tighter of its day cap
  (by the number's age, `send.per_day`) and what its spacing allows inside the window. Its
  weight is capacity x health; recipients are shared in proportion to the weights (largest
  remainder), a number getting at least the contacts who already talk to it.
- A number's share is spread across its send window: evenly when the rest fits in the day,
  else at the day's capacity, continuing in the next day's window. Each time moves by up to
  +-20 % of the spacing, and the spacing is chosen so that two neighbours are never closer
  than the pacing rules allow (`MIN_SPACING_FACTOR`). The last send of a window is planned
  `CLOSE_MARGIN` before it closes, so the send itself still falls inside. Without a window,
  messages go out at that minimum spacing and a "day" is the 24 hours from the start.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from wasupd.config import SendConfig
from wasupd.errors import InvalidArgument
from wasupd.messaging.pacing import DAY, daily_cap

JITTER = 0.2
# With +-20 % jitter two neighbours can come 0.6 spacing apart: the spacing is the pacing gap
# divided by this, so the sender's pacing never has to hold a planned message back.
MIN_SPACING_FACTOR = 1 - 2 * JITTER
# A number with pacing off (tests, benchmarks) has no day limit worth the name.
UNLIMITED = 10**9
# The last send of a window is planned at least this long before it closes: a send takes time
# after its planned moment (the page's round trips, a typing pause of up to 3 s, a busy host),
# and planned right at the close it would go out after it.
CLOSE_MARGIN = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Number:
    """One number as the planner sees it."""

    name: str
    capacity: int  # messages per day (window and limits)
    today: int  # what it may still send in the first day
    spacing: float  # the least seconds between two of its planned sends
    health: float = 1.0
    window: str = ""

    @property
    def weight(self) -> float:
        """Its claim on the campaign's recipients."""
        return max(self.capacity, 0) * max(self.health, 0.01)


def window_minutes(window: str) -> tuple[int, int]:
    """(start, length) in minutes of `HH:MM-HH:MM`; InvalidArgument when malformed."""
    try:
        start_s, end_s = window.split("-")
        start, end = (int(a) * 60 + int(b) for a, b in (p.split(":") for p in (start_s, end_s)))
        if not (0 <= start < 1440 and 0 <= end <= 1440) or start == end:
            raise ValueError(window)
    except ValueError:
        raise InvalidArgument(
            f"invalid window {window!r}: give local times HH:MM-HH:MM, e.g. 09:00-20:00"
        ) from None
    return start, (end - start) % 1440


def usable_seconds(length_minutes: int) -> float:
    """How much of a window of `length_minutes` sends may be planned in (all but the margin
    before it closes; a window too short for a margin keeps all of it)."""
    seconds = length_minutes * 60.0
    return seconds - CLOSE_MARGIN if seconds > 2 * CLOSE_MARGIN else seconds


def window_at(window: str, t: float) -> tuple[float, float]:
    """The window occurrence (open, close) containing `t`, else the next one; open >= t.
    `close` is the last moment a send may be planned: `CLOSE_MARGIN` before the window ends."""
    start, length = window_minutes(window)
    lt = time.localtime(t)
    for offset in (-1, 0, 1, 2):
        opens = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday + offset, 0, start, 0, 0, 0, -1))
        closes = opens + usable_seconds(length)
        if closes > t:
            return max(opens, t), closes
    raise AssertionError("a window always opens within two days")  # pragma: no cover


def number_for(
    name: str,
    cfg: SendConfig,
    *,
    linked_at: float | None,
    now: float,
    sent_day: int,
    health: float,
    window: str,
) -> Number:
    """A number's capacity from its pacing config, age and the sends of the last day."""
    if not cfg.pacing:
        return Number(
            name=name,
            capacity=UNLIMITED,
            today=UNLIMITED,
            spacing=0.0,
            health=health,
            window=window,
        )
    gaps = [cfg.jitter_max]
    if cfg.per_minute:
        gaps.append(60.0 / cfg.per_minute)
    if cfg.per_hour:
        gaps.append(3600.0 / cfg.per_hour)
    spacing = max(gaps) / MIN_SPACING_FACTOR
    day_len = usable_seconds(window_minutes(window)[1]) if window else DAY
    fits = int(day_len / spacing) if spacing > 0 else UNLIMITED
    cap = daily_cap(cfg, linked_at, now) or UNLIMITED
    return Number(
        name=name,
        capacity=min(cap, fits),
        today=max(min(cap - sent_day, fits), 0),
        spacing=spacing,
        health=health,
        window=window,
    )


def shares(numbers: list[Number], total: int, sticky: dict[str, int]) -> dict[str, int]:
    """Recipients per number: in proportion to the weights (largest remainder), but at least
    the contacts who already talk to it."""
    weights = {n.name: n.weight for n in numbers}
    wsum = sum(weights.values()) or float(len(numbers))
    exact = {n: total * (w if sum(weights.values()) else 1.0) / wsum for n, w in weights.items()}
    out = {n: int(v) for n, v in exact.items()}
    for n in sorted(exact, key=lambda k: exact[k] - out[k], reverse=True)[
        : total - sum(out.values())
    ]:
        out[n] += 1
    # Sticky contacts go to their number even past its share; the others give way, from the
    # most over-served down.
    for name, count in sticky.items():
        extra = count - out.get(name, 0)
        while extra > 0:
            donors = [n for n in out if n != name and out[n] > sticky.get(n, 0)]
            if not donors:
                break
            donor = max(donors, key=lambda n: out[n] - exact[n])
            out[donor] -= 1
            out[name] += 1
            extra -= 1
    return out


def slots(number: Number, count: int, start: float, rng: random.Random) -> Iterator[float]:
    """The planned send times of a number's `count` recipients, in order, from `start`."""
    left, t, day = count, start, 0
    while left > 0:
        opens, closes = window_at(number.window, t) if number.window else (t, t + DAY)
        length = closes - opens
        room = number.today if day == 0 else number.capacity
        if number.spacing > 0:
            room = min(room, int(length / number.spacing))
        k = min(room, left)
        if k > 0:
            # In a window the day's part is spread across the rest of the window.
            step = length / (k if k == left else room) if number.window else number.spacing
            for j in range(k):
                yield opens + (j + 0.5) * step + rng.uniform(-JITTER, JITTER) * step
            left -= k
        t, day = closes, day + 1


@dataclass(slots=True)
class NumberPlan:
    """What the plan gives one number."""

    count: int = 0
    first: float | None = None
    last: float | None = None
    days: set[int] = field(default_factory=set)

    def add(self, at: float, start: float) -> None:
        """Count one planned send."""
        self.count += 1
        self.first = at if self.first is None else min(self.first, at)
        self.last = at if self.last is None else max(self.last, at)
        self.days.add(int((at - start) // DAY))

    def as_dict(self) -> dict[str, object]:
        """As `--dry-run` and `campaign show` print it."""
        return {"count": self.count, "first": self.first, "last": self.last, "days": len(self.days)}


def capacity_until(number: Number, start: float, until: float) -> int:
    """How many messages the number could send between `start` and `until`."""
    total, t, day = 0, start, 0
    while t < until and day < 3660:
        opens, closes = window_at(number.window, t) if number.window else (t, t + DAY)
        if opens >= until:
            break
        room = number.today if day == 0 else number.capacity
        length = min(closes, until) - opens
        if number.spacing > 0:
            room = min(room, int(length / number.spacing))
        total += max(room, 0)
        t, day = closes, day + 1
    return total


def shortfall(numbers: list[Number], total: int, start: float, until: float) -> str:
    """Why a plan cannot finish by `until`: how many more numbers, or days, it would need."""
    can = sum(capacity_until(n, start, until) for n in numbers)
    per_number = can / len(numbers) if numbers else 0.0
    more_numbers = math.ceil((total - can) / per_number) if per_number > 0 else 0
    per_day = sum(n.capacity for n in numbers)
    more_days = math.ceil((total - can) / per_day) if per_day > 0 else 0
    return (
        f"{total} recipients do not fit before the end time: the {len(numbers)} numbers can send"
        f" {can} by then; add {more_numbers} more number(s) of similar capacity, or allow"
        f" {more_days} more day(s) (--until)"
    )
