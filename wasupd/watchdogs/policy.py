"""Watchdog decisions: which resource limit a sample exceeds, with the reason users will read."""

from __future__ import annotations

from dataclasses import dataclass

from wasupd.supervision.seams import TreeUsage

MIB = 1024 * 1024
CPU_SAMPLES = 3  # CPU must stay over its limit this many samples in a row


@dataclass(frozen=True, slots=True)
class Limits:
    """Effective per-session limits (0 = off)."""

    memory_mib: int
    fds: int
    processes: int
    cpu_percent: float


class ResourcePolicy:
    """Checks samples against limits; CPU needs a sustained excess, the others trip at once."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._cpu_over = 0

    def check(self, u: TreeUsage) -> str | None:
        """The reason to restart, or None when the sample is within limits."""
        lim = self.limits
        if lim.memory_mib and u.pss_bytes > lim.memory_mib * MIB:
            return f"watchdog: memory {u.pss_bytes // MIB} MiB > limit {lim.memory_mib} MiB"
        if lim.fds and u.fds > lim.fds:
            return f"watchdog: {u.fds} open fds > limit {lim.fds}"
        if lim.processes and u.processes > lim.processes:
            return f"watchdog: {u.processes} processes > limit {lim.processes}"
        if lim.cpu_percent and u.cpu_percent > lim.cpu_percent:
            self._cpu_over += 1
            if self._cpu_over >= CPU_SAMPLES:
                return f"watchdog: CPU {u.cpu_percent:.0f}% > limit {lim.cpu_percent:g}% for {CPU_SAMPLES} samples"
        else:
            self._cpu_over = 0
        return None
