"""Where sessions go: the host with the most headroom, one session at a time.

Every host computes the same plan from the same snapshot of the `hosts` table, so each can
take its own share of the unowned sessions without asking the others; claims use SKIP
LOCKED, so a plan computed from a slightly old snapshot at worst leaves a session for the
next round, never gives it to two hosts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# What one session is expected to take, for placement by memory (docs/whatsapp-web.md §8
# puts a WhatsApp Web tab at 300-400 MiB; the simulator's page at about 350 MiB).
SESSION_MIB = 400


@dataclass(frozen=True, slots=True, kw_only=True)
class Room:
    """One host's room for more sessions, as placement sees it."""

    host_id: str
    free_slots: int  # max_sessions minus the sessions it holds
    headroom_mib: int  # memory available to sessions (MemAvailable above the reserve)
    usable: bool = True  # alive and not draining

    def slots(self, session_mib: int = SESSION_MIB) -> int:
        """How many more sessions fit: by count and by memory, the smaller."""
        if not self.usable:
            return 0
        return max(0, min(self.free_slots, self.headroom_mib // max(1, session_mib)))


def shares(rooms: Iterable[Room], unowned: int, session_mib: int = SESSION_MIB) -> dict[str, int]:
    """How many of `unowned` sessions each host takes: each in turn to the host with the most
    room left (memory first, then free slots, then the host id, so every host agrees)."""
    left = {r.host_id: (r.slots(session_mib), r.headroom_mib) for r in rooms}
    out = dict.fromkeys(left, 0)
    for _ in range(unowned):
        fits = [(-mib, -slots, host) for host, (slots, mib) in left.items() if slots > 0]
        if not fits:
            break
        _, _, host = min(fits)
        slots, mib = left[host]
        out[host] += 1
        left[host] = (slots - 1, mib - session_mib)
    return out


def best(rooms: Iterable[Room], session_mib: int = SESSION_MIB) -> str:
    """The host a new session should start on ('' when no host has room)."""
    plan = shares(rooms, 1, session_mib)
    return next((host for host, n in plan.items() if n), "")
