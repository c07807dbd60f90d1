"""Resource use of one browser tree: PSS (not RSS sums), fds, process count, CPU.

PSS divides shared pages (the zygote's, libraries) among the processes that map them, so the sum
over a tree is what the tree really costs; RSS sums count shared pages once per process.

Reading PSS is not cheap for Chromium: the kernel walks every mapping (`smaps_rollup`), measured
at 3-9 ms per process here, ~50 ms per session tree. Sampling 50 sessions every 5 s that way
would cost half a core. So `TreeSampler` measures PSS exactly when the tree changes and at most
every `pss_max_age` seconds, and in between tracks each process's private (anonymous) resident
memory from `statm` (microseconds): estimate = PSS at the last measure + growth of private memory
since. Memory growth (a leak, a ballast) shows at the next sample; shared pages do not move it.
Membership (descendants of the browser + processes whose command line names the profile dir)
is rediscovered every `discover_every` seconds and whenever a member has gone, because a
process-table walk costs a full /proc scan (this kernel has no /proc/<pid>/task/*/children).
`psutil.Process` objects are kept between samples so CPU percentages are meaningful.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from wasupd.supervision.seams import TreeUsage

PSS_MAX_AGE = 300.0
DISCOVER_EVERY = 60.0
GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)


def names_profile(cmdline: Iterable[str], profile_dir: Path) -> bool:
    """True when a command line passes `--user-data-dir=<profile_dir>` (trailing slash allowed)."""
    marker = f"--user-data-dir={profile_dir}"
    return any(part.rstrip("/") == marker.rstrip("/") for part in cmdline)


def profile_processes(profile_dir: Path) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line names `profile_dir` (a full /proc scan)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(*GONE):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and names_profile(
                proc.info["cmdline"] or (), profile_dir
            ):
                found.append(proc)
    return found


def _private(proc: psutil.Process) -> int:
    """Private resident bytes (anonymous memory): statm's resident minus its shared part."""
    mem = proc.memory_info()
    return int(mem.rss - mem.shared)


@dataclass(slots=True)
class _Member:
    proc: psutil.Process
    pss: int = -1  # at the last exact measure; -1 = not measured yet
    private_then: int = 0  # private bytes at that measure


class TreeSampler:
    """Samples the tree rooted at `root_pid` (plus processes naming `profile_dir`) cheaply."""

    def __init__(
        self,
        root_pid: int,
        profile_dir: Path | None = None,
        *,
        pss_max_age: float = PSS_MAX_AGE,
        discover_every: float = DISCOVER_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root_pid = root_pid
        self.profile_dir = profile_dir
        self.pss_max_age = pss_max_age
        self.discover_every = discover_every
        self.clock = clock
        self._members: dict[int, _Member] = {}
        self._discovered_at = -float("inf")
        self._pss_at = -float("inf")
        self.exact_samples = 0  # how many samples measured PSS exactly (for tests and metrics)

    def _discover(self) -> None:
        """Rebuild membership: the root's descendants and the profile's processes."""
        found: dict[int, psutil.Process] = {}
        with contextlib.suppress(*GONE):
            root = psutil.Process(self.root_pid)
            found = {p.pid: p for p in (root, *root.children(recursive=True))}
        if self.profile_dir is not None:
            found.update((p.pid, p) for p in profile_processes(self.profile_dir))
        members = {}
        for pid, proc in found.items():
            old = self._members.get(pid)
            # Keep the old object (its CPU times, its PSS) only when it is the same process.
            members[pid] = old if old is not None and old.proc == proc else _Member(proc)
        self._members = members
        self._discovered_at = self.clock()

    def _due(self, now: float) -> tuple[bool, bool]:
        """(rediscover, measure PSS exactly) for a sample taken at `now`."""
        gone = any(not m.proc.is_running() for m in self._members.values())
        discover = gone or not self._members or now - self._discovered_at >= self.discover_every
        return discover, now - self._pss_at >= self.pss_max_age

    def sample(self, *, exact: bool = False) -> TreeUsage:
        """One sample; `exact` forces a PSS measure. Processes that vanish mid-sample are skipped."""
        now = self.clock()
        discover, stale = self._due(now)
        if discover:
            self._discover()
        exact = exact or stale or any(m.pss < 0 for m in self._members.values())
        pss = fds = count = 0
        cpu = 0.0
        for m in list(self._members.values()):
            with contextlib.suppress(*GONE), m.proc.oneshot():
                pss += self._memory(m, exact)
                fds += m.proc.num_fds()
                cpu += m.proc.cpu_percent(None)
                count += 1
        if exact:
            self._pss_at = now
            self.exact_samples += 1
        return TreeUsage(pss_bytes=pss, fds=fds, processes=count, cpu_percent=cpu)

    @staticmethod
    def _memory(m: _Member, exact: bool) -> int:
        private = _private(m.proc)
        if exact:
            m.pss, m.private_then = int(m.proc.memory_full_info().pss), private
            return m.pss
        return max(0, m.pss + private - m.private_then)


def measure_tree(root_pid: int, profile_dir: Path | None = None) -> TreeUsage:
    """One exact sample of a tree (PSS measured, not estimated; CPU percent is 0 in one shot)."""
    return TreeSampler(root_pid, profile_dir).sample(exact=True)
