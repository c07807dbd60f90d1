"""Watchdog decisions: which limit a sample exceeds, when to probe, what the reason says.

Pure logic on samples and timestamps (no I/O), so the session runner stays small and every rule
has a fast unit test. The reason strings are what users read in `wasupctl session show`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

from wasupd.config import HealthConfig
from wasupd.watchdogs.usage import TreeUsage

MIB = 1024 * 1024
SOFT_SHARE = 0.8  # the soft memory limit when none is set: this share of the hard one
CPU_SAMPLES = 3  # CPU must stay over its limit this many samples in a row
HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Effective per-session limits (0 = off)."""

    memory_mib: int
    fds: int
    processes: int
    cpu_percent: float
    memory_soft_mib: int = 0  # effective: already resolved from SOFT_SHARE (0 = no reclaim)
    reclaim_interval: float = 0.0


def soft_limit_mib(soft_mib: int, memory_mib: int) -> int:
    """The effective soft limit: `soft_mib`, else SOFT_SHARE of `memory_mib` (0 when both are 0),
    never above the hard limit."""
    soft = soft_mib or int(memory_mib * SOFT_SHARE)
    return min(soft, memory_mib) if memory_mib else soft


class ReclaimPolicy:
    """When a page gets a memory reclaim, and what the last one did (for the restart reason).

    A reclaim is due when PSS is over the soft limit and the previous reclaim was at least
    `reclaim_interval` ago: a page that stays over the soft limit gets one reclaim per interval,
    not one per sample (a forced GC of a large heap costs the page a pause).
    """

    def __init__(self) -> None:
        self.last_at = -math.inf
        self.freed_bytes = 0
        self.count = 0
        self.failed = False  # the last one: DevTools refused or did not answer

    def due(self, now: float, u: TreeUsage, lim: Limits) -> bool:
        """True when a reclaim should run now for sample `u`."""
        soft = lim.memory_soft_mib
        if not soft or u.pss_bytes <= soft * MIB:
            return False
        return now - self.last_at >= lim.reclaim_interval

    def done(self, now: float, before: TreeUsage, after: TreeUsage | None) -> None:
        """Record a reclaim that took the tree from `before` to `after` (None: it failed; the
        interval holds for a failed one too, so a broken DevTools is not asked every sample)."""
        self.last_at, self.count, self.failed = now, self.count + 1, after is None
        self.freed_bytes = 0 if after is None else before.pss_bytes - after.pss_bytes

    def note(self, now: float) -> str:
        """What the memory reason adds about the last reclaim ("" when there was none)."""
        if self.count == 0:
            return ""
        ago = f"{max(0.0, now - self.last_at):.0f} s ago"
        if self.failed:
            return f" after a failed reclaim {ago}"
        freed = f"freed {self.freed_bytes // MIB} MiB" if self.freed_bytes > 0 else "freed nothing"
        return f" after a reclaim {ago} ({freed})"


class ResourcePolicy:
    """Checks samples against limits; CPU needs a sustained excess, the others trip at once."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._cpu_over = 0
        self.reclaim = ReclaimPolicy()

    def check(self, u: TreeUsage, now: float = 0.0) -> str | None:
        """The reason to restart, or None when the sample (taken at monotonic `now`) is within
        limits. Memory over the hard limit trips even right after a reclaim: the reclaim did
        not bring it under, and the reason says what it freed."""
        lim = self.limits
        if lim.memory_mib and u.pss_bytes > lim.memory_mib * MIB:
            return (
                f"watchdog: memory {u.pss_bytes // MIB} MiB > limit {lim.memory_mib} MiB"
                + self.reclaim.note(now)
            )
        if lim.fds and u.fds > lim.fds:
            return f"watchdog: {u.fds} open fds > limit {lim.fds}"
        if lim.processes and u.processes > lim.processes:
            return f"watchdog: {u.processes} processes > limit {lim.processes}"
        if lim.cpu_percent and u.cpu_percent > lim.cpu_percent:
            self._cpu_over += 1
            if self._cpu_over >= CPU_SAMPLES:
                return (
                    f"watchdog: CPU {u.cpu_percent:.0f}% > limit {lim.cpu_percent:g}%"
                    f" for {CPU_SAMPLES} samples"
                )
        else:
            self._cpu_over = 0
        return None


class HangPolicy:
    """A DevTools ping that misses once is a suspicion, not yet a hang.

    On a host whose cores are starved a healthy browser can take longer than `hang_timeout`
    to answer: 100 linked sessions on 2 shared cores (load average near 100) restarted a dozen
    healthy browsers an hour on single misses, and each restart added load. So after a miss the
    next ping waits twice as long, and only a second miss in a row trips; a ping that answers
    clears the suspicion. A browser that is really hung is restarted one check later.
    """

    def __init__(self) -> None:
        self.suspected = False

    def timeout(self, hang_timeout: float) -> float:
        """How long the next ping may take."""
        return hang_timeout * 2 if self.suspected else hang_timeout

    def missed(self) -> bool:
        """Record a miss; True when it trips (the second in a row)."""
        trip, self.suspected = self.suspected, True
        return trip

    def answered(self) -> None:
        """The ping answered: the browser is alive."""
        self.suspected = False


def hang_reason(timeout: float) -> str:
    """The reason recorded when the DevTools ping does not answer in time."""
    return f"watchdog: DevTools did not answer within {timeout:g} s"


ProbeVerdict = Literal["ok", "reload", "restart"]


class LivenessPolicy:
    """When to probe a page that looks connected, and what a probe's result leads to.

    A probe is due when the page has been silent for `silence_timeout` (or a reload we ordered
    is waiting for its check), at most once per `probe_interval`. The first failure degrades the
    session and reloads the page; a failure after that reload restarts the browser, even when
    the page reported connected in between. Only a probe that answers starts over.
    """

    def __init__(self) -> None:
        self.last_probe = -math.inf
        self.reloaded = False

    def due(self, now: float, last_activity: float | None, health: HealthConfig) -> bool:
        """True when a probe should run now."""
        if now - self.last_probe < health.probe_interval:
            return False
        silent = last_activity is not None and now - last_activity > health.silence_timeout
        return self.reloaded or silent

    def probed(self, now: float, *, ok: bool) -> ProbeVerdict:
        """Record a probe's result; what to do next."""
        self.last_probe = now
        if ok:
            self.reloaded = False
            return "ok"
        if self.reloaded:
            return "restart"
        self.reloaded = True
        return "reload"


class QrLimiter:
    """At most `max_per_hour` new QR generations in any hour, across browser restarts."""

    def __init__(self) -> None:
        self.generations: deque[float] = deque()
        self.blocked_until = 0.0
        self.limit = 0

    def admit(self, now: float, max_per_hour: int) -> bool:
        """Count a new generation at wall time `now`; False (and blocked) when over the limit."""
        while self.generations and now - self.generations[0] >= HOUR:
            self.generations.popleft()
        if max_per_hour and len(self.generations) >= max_per_hour:
            self.limit = max_per_hour
            self.blocked_until = self.generations[0] + HOUR
            return False
        self.generations.append(now)
        return True

    def blocked(self, now: float) -> bool:
        """True while a start must be refused."""
        return now < self.blocked_until

    def reason(self) -> str:
        """The reason users read: the limit and when to try again."""
        until = time.strftime("%H:%M UTC", time.gmtime(math.ceil(self.blocked_until / 60) * 60))
        return f"QR limit: {self.limit} generations in the last hour; try again after {until}"
