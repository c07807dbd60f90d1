"""Every duration of the simulated WhatsApp, in real seconds, and their scaling.

The figures come from docs/whatsapp-web.md (the § noted per line); where that page
gives none, the value is a plausible real-world one, marked "chosen". `Timings` multiplies them
all by one time factor, so tests run the same timelines fast (0.02-0.1) and demos at 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REFS_PER_BATCH = 6  # §1b: "WhatsApp only sends 6 QR per socket"
FIRST_REF_S = 60.0  # §1b: the first ref lives 60 s
NEXT_REF_S = 20.0  # §1b: each later ref lives 20 s
CODE_REFRESH_S = 180.0  # §3: a new pairing code every 3 min ("WhatsApp default")
CODE_TTL_S = 195.0  # §3: wa-js link-code TTL, 3.25 min
CODE_MAX_REFRESHES = 5  # §3: wa-js MAX_AUTO_REFRESHES
BOOT_S = 2.0  # chosen: the bundle loads before window.Debug.VERSION exists (§1a)
OPENING_S = 1.0  # chosen: Socket.state stays OPENING while the socket connects (§2b)
PAIRING_S = 1.0  # chosen: PAIRING lasts this long after the phone scans (§2b)
SYNC_S = 5.0  # chosen: CONNECTED -> progress 0..100 -> hasSynced; §2b asks for a delay
ACK_DELIVERED_S = 0.5  # chosen: server ack (1) -> delivered to the recipient's phone (2)
ACK_READ_S = 3.0  # chosen: delivered (2) -> read on the recipient's phone (3)


@dataclass(frozen=True, slots=True)
class Timings:
    """The durations above multiplied by `factor` (seconds)."""

    factor: float = 1.0

    def __call__(self, seconds: float) -> float:
        """`seconds` scaled by the time factor."""
        return seconds * self.factor

    def page_config(self) -> dict[str, float]:
        """The page's share of the timeline, in milliseconds (the page runs its own timers),
        and the factor itself (`timeFactor`, for durations the page scales on its own)."""
        ms = {
            "bootMs": BOOT_S,
            "codeRefreshMs": CODE_REFRESH_S,
            "pairingMs": PAIRING_S,
            "syncMs": SYNC_S,
        }
        return {
            **{key: round(self(s) * 1000, 3) for key, s in ms.items()},
            "timeFactor": self.factor,
        }


def check_factor(factor: Any) -> float:
    """`factor` as a float if it is a positive number; ValueError saying what is expected."""
    try:
        value = float(factor)
    except (TypeError, ValueError):
        value = 0.0
    if not value > 0:
        raise ValueError(
            f"time_factor must be a number > 0 (0.05 for tests, 1.0 for real speed), got {factor!r}"
        )
    return value
