"""What one sample of a session's process tree measured (the watchdogs judge it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeUsage:
    """Resource use of one session's whole process tree (one psutil sample)."""

    pss_bytes: int = 0
    fds: int = 0
    processes: int = 0
    cpu_percent: float = 0.0
