"""The growth fault: a page that grows over simulated time, part of it reclaimable.

Real WhatsApp Web tabs grow over days. `fault("growth", mib_per_hour=N, reclaimable=R)` makes
the covered pages add N MiB of JS heap per simulated hour (time-compressed like every other
duration; static/growth.js adds it in steps of 2 simulated seconds). A share R of it is
reclaimable, the rest a true leak that only a reload or a restart frees.

The reclaimable share is a cache the page drops on a memory pressure signal: the
`memorypressure` event a reclaim dispatches on the page's window before its forced GC
(wasupd/devtools/memory.py). Held strongly until then, so V8's own GCs never free it and the
model does not depend on when V8 collects. Measured with Chromium 156 first: a cache that only
weak references keep is no model of anything, V8 frees it within a step or two on its own; and
a cache that follows the browser's HTTP cache cannot work under the daemon's 1-byte disk cache.
"""

from __future__ import annotations

from typing import Any

DEFAULT_MIB_PER_HOUR = 60.0
DEFAULT_RECLAIMABLE = 0.5


def params(raw: dict[str, Any]) -> dict[str, float]:
    """The fault's parameters with defaults; ValueError naming a bad one and what is expected."""
    rate = _number(raw, "mib_per_hour", DEFAULT_MIB_PER_HOUR)
    share = _number(raw, "reclaimable", DEFAULT_RECLAIMABLE)
    if rate <= 0:
        raise ValueError(f"growth: mib_per_hour must be positive, got {rate:g}")
    if not 0 <= share <= 1:
        raise ValueError(
            f"growth: reclaimable is the reclaimable share, from 0 to 1, got {share:g}"
        )
    return {"mib_per_hour": rate, "reclaimable": share}


def _number(raw: dict[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"growth: {key} must be a number, got {value!r}") from None
