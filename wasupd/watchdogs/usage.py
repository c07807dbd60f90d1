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

    def as_dict(self) -> dict[str, int | float]:
        """The fields by name, as `dataclasses.asdict` gives them, at a fiftieth of its cost
        (status and metrics describe every session, often)."""
        return {
            "pss_bytes": self.pss_bytes,
            "fds": self.fds,
            "processes": self.processes,
            "cpu_percent": self.cpu_percent,
        }
