"""Resource use of one browser tree: PSS (not RSS sums), fds, process count, CPU.

PSS divides shared pages (the zygote's, libraries) among the processes that map them, so the sum
over a tree is what the tree really costs; RSS sums count shared pages once per process.

Cheap enough for 50 sessions every few seconds:
- PSS: the kernel walks every mapping to produce it (`smaps_rollup`): 1-3 ms per Chromium
  process here, ~7 ms CPU per tree. So `TreeSampler` measures PSS exactly when membership
  changes and at most every `pss_max_age` seconds; in between it adds each process's growth of
  private resident memory (from `statm`, microseconds) to its last exact PSS. A leak or a
  ballast shows at the next sample; shared pages do not move the estimate. At a periodic exact
  measure, a member whose private memory stayed within `STILL_BYTES` of its last exact measure
  keeps its estimate (what can have moved is its share of shared pages, not what a leak
  grows), up to `STILL_PERIODS` periods: the zygotes, the GPU process and the launcher wrapper
  hardly move, and skipping their walks saves over a third of the tree's. A forced exact
  sample (a reclaim's verdict, `measure_tree`) walks every member.
- Membership: this kernel has no /proc/<pid>/task/*/children, so finding descendants means a
  scan of every process's stat. One snapshot of (pid -> parent) is shared by all samplers for
  `SNAPSHOT_TTL`, and samplers rediscover on a common clock grid (`discover_every`) so one scan
  serves every session; a sampler whose member vanished rediscovers at its next sample.
  Processes that escaped the tree but name the profile dir are found among the daemon's own
  adopted children (it is a child subreaper: orphans are re-parented to it).
- The cheap path reads /proc directly (stat, statm, the fd directory's size: three small reads
  per process) instead of through psutil objects, about 4x less CPU; psutil still measures PSS.
  Each member keeps its previous CPU ticks, so CPU percent is over the interval between samples.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from wasupd.watchdogs.usage import TreeUsage

PSS_MAX_AGE = 300.0
# A member whose private memory moved less than this since its last exact PSS keeps its
# estimate at a periodic exact measure, for at most STILL_PERIODS periods of pss_max_age.
STILL_BYTES = 1 << 20
STILL_PERIODS = 4
DISCOVER_EVERY = 60.0
# Open fds are counted at most this often per process: listing /proc/PID/fd of a browser with
# hundreds of fds is the dearest part of a sample, and an fd leak grows over minutes, not seconds.
FDS_MAX_AGE = 30.0
SNAPSHOT_TTL = 5.0
# After a member is lost the tree is rediscovered from a snapshot at most this old, shared by
# every sampler: the full build's helpers come and go (on-device-model utility processes), and
# 58 full sessions forcing a scan of all /proc on each loss made that the daemon's largest cost.
FRESH_SNAPSHOT_AGE = 1.0
# Pids of browsers we spawned and reap ourselves (pidfd watchers): the orphan reaper skips them,
# and the process table does not count them as adopted orphans.
OWN_CHILDREN: set[int] = set()
# /proc/<pid>/stat and statm are under 1 KiB; a read of this size takes either whole.
READ_MAX = 4096
GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)


def names_profile(cmdline: Iterable[str], profile_dir: Path) -> bool:
    """True when a command line passes `--user-data-dir=<profile_dir>` (trailing slash allowed)."""
    marker = f"--user-data-dir={profile_dir}".rstrip("/")
    return any(part.rstrip("/") == marker for part in cmdline)


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


def _read(path: str) -> bytes:
    """A small /proc file in one `read`: `open()` adds a buffered file object and an isatty
    `ioctl`, an `fstat` and two `lseek`s per file, and the samplers read tens a second."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, READ_MAX)
    finally:
        os.close(fd)


def _parent_of(pid: str) -> int:
    """The parent pid from /proc/<pid>/stat (the comm field may hold spaces and parens)."""
    return int(_read(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()[1])


def profile_named_by(pid: int) -> str | None:
    """The `--user-data-dir` on a process's command line (trailing slash dropped), if any.

    Chromium's helpers rewrite their title into one space-separated string: split it as psutil
    does, so this agrees with `names_profile` over `psutil.Process.cmdline()`."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        data = f.read().removesuffix(b"\0")
    args = data.split(b"\0")
    if len(args) == 1 and b" " in data:
        args = data.split(b" ")
    for arg in args:
        if arg.startswith(b"--user-data-dir="):
            return os.fsdecode(arg[len(b"--user-data-dir=") :]).rstrip("/")
    return None


class _Snapshot:
    """parent -> children of every process, and the daemon's adopted orphans by the profile dir
    their command line names, shared by all samplers for `SNAPSHOT_TTL`.

    Adopted orphans (crashpad handlers, helpers of a browser that died) are the daemon's
    children that are not its own browsers; each one's command line is read once per snapshot,
    not once per sampler (50 sessions with a crashpad handler each made that 2,500 reads a
    minute)."""

    children: dict[int, list[int]] = {}
    adopted: dict[str, list[int]] = {}
    taken_at = -float("inf")
    scans = 0  # how many full /proc scans were made (for tests)

    @classmethod
    def get(cls, now: float, max_age: float = SNAPSHOT_TTL) -> dict[int, list[int]]:
        """The table, scanned afresh when older than `max_age`, or when taken "after" `now`:
        samplers may run on different clocks (tests inject one), and a snapshot stamped on
        another clock says nothing about its age on this one."""
        age = now - cls.taken_at
        if age >= max_age or age < 0:
            cls.scans += 1
            table: dict[int, list[int]] = {}
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    with contextlib.suppress(OSError, IndexError, ValueError):
                        table.setdefault(_parent_of(pid), []).append(int(pid))
            adopted: dict[str, list[int]] = {}
            for child in set(table.get(os.getpid(), ())) - OWN_CHILDREN:
                with contextlib.suppress(OSError):
                    if (named := profile_named_by(child)) is not None:
                        adopted.setdefault(named, []).append(child)
            cls.children, cls.adopted, cls.taken_at = table, adopted, now
        return cls.children


def descendants(root: int, children: dict[int, list[int]]) -> list[int]:
    """`root` and every pid below it in a parent -> children table."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class _Stat:
    """The fields of /proc/<pid>/stat a sample needs."""

    zombie: bool
    cpu_ticks: int  # utime + stime
    start: int  # start time in ticks since boot: with the pid, identifies the process


def _stat(pid: int) -> _Stat:
    fields = _read(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()
    # After "pid (comm)": state=0, ..., utime=11, stime=12, ..., starttime=19.
    return _Stat(fields[0] == b"Z", int(fields[11]) + int(fields[12]), int(fields[19]))


def _private(pid: int) -> int:
    """Private resident bytes (anonymous memory): statm's resident minus its shared pages."""
    resident, shared = _read(f"/proc/{pid}/statm").split()[1:3]
    return (int(resident) - int(shared)) * PAGE


def _fd_count(pid: int) -> int:
    """Open fds: Linux >= 6.2 reports the count as the size of /proc/<pid>/fd (no listing)."""
    size = os.stat(f"/proc/{pid}/fd").st_size
    return size if size > 0 else len(os.listdir(f"/proc/{pid}/fd"))


def _pss(pid: int) -> int:
    """PSS bytes, exact (the kernel walks every mapping: milliseconds for a Chromium process)."""
    return int(psutil.Process(pid).memory_full_info().pss)


@dataclass(slots=True)
class _Member:
    pid: int
    start: int
    pss: int = -1  # at the last exact measure; -1 = not measured yet
    private_then: int = 0  # private bytes at that measure
    pss_at: float = -float("inf")  # when that measure was taken
    cpu_ticks: int = -1  # at the previous sample, for CPU percent
    cpu_at: float = 0.0
    fds: int = 0  # at the last count
    fds_at: float = -float("inf")


class TreeSampler:
    """Samples the tree rooted at `root_pid` (plus strays naming `profile_dir`) cheaply."""

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
        self._epoch = -1  # the discovery grid cell of the last discovery
        self._lost_member = True
        self._pss_at = -float("inf")
        self.exact_samples = 0  # how many samples measured PSS exactly (for tests and metrics)
        self.exact_walks = 0  # how many processes' PSS those samples walked (for tests)

    @property
    def pids(self) -> list[int]:
        """The members found by the last discovery."""
        return list(self._members)

    def _strays(self, tree: set[int]) -> set[int]:
        """Adopted orphans of the daemon (not in the tree) whose command line names the profile
        (from the snapshot `_discover` just read)."""
        if self.profile_dir is None:
            return set()
        return set(_Snapshot.adopted.get(str(self.profile_dir).rstrip("/"), ())) - tree

    def _discover(self, now: float, fresh: bool) -> None:
        """Rebuild membership from the shared snapshot: a new scan for a sampler's first
        discovery (a snapshot taken before this tree's helpers started would miss them until the
        next minute's discovery), one at most `FRESH_SNAPSHOT_AGE` old after a loss."""
        first = self._epoch < 0
        max_age = 0.0 if first else (FRESH_SNAPSHOT_AGE if fresh else SNAPSHOT_TTL)
        children = _Snapshot.get(now, max_age)
        tree = set(descendants(self.root_pid, children))
        members = {}
        for pid in tree | self._strays(tree):
            with contextlib.suppress(OSError, IndexError, ValueError):
                start = _stat(pid).start
                old = self._members.get(pid)
                # Keep the old record (CPU ticks, PSS) only when it is the same process.
                members[pid] = (
                    old if old is not None and old.start == start else _Member(pid, start)
                )
        self._members, self._lost_member = members, False
        self._epoch = int(now // self.discover_every)

    def _discovery_due(self, now: float) -> bool:
        return self._lost_member or int(now // self.discover_every) != self._epoch

    def _exact_due(self, now: float) -> bool:
        return now - self._pss_at >= self.pss_max_age or any(
            m.pss < 0 for m in self._members.values()
        )

    def quick(self) -> bool:
        """True when the next `sample()` only reads a few small /proc files per member (tens of
        microseconds: fine on the event loop); False when it will scan /proc or measure PSS
        (milliseconds: run it in a thread)."""
        now = self.clock()
        return not (self._discovery_due(now) or self._exact_due(now))

    def sample(self, *, exact: bool = False) -> TreeUsage:
        """One sample; `exact` forces a PSS measure of every member (a periodic one spares the
        still members, see the module doc). Processes that vanish mid-sample are skipped (and
        make the next sample rediscover)."""
        now = self.clock()
        if self._discovery_due(now):
            self._discover(now, fresh=self._lost_member)
        periodic = not exact and self._exact_due(now)
        exact = exact or periodic
        pss = fds = count = 0
        cpu = 0.0
        for m in list(self._members.values()):
            try:
                got = self._sample_one(m, now, exact, periodic)
            except (OSError, IndexError, ValueError, *GONE):
                got = None
            if got is None:
                self._lost_member = True
                continue
            pss, fds, cpu, count = pss + got[0], fds + got[1], cpu + got[2], count + 1
        if exact:
            self._pss_at = now
            self.exact_samples += 1
        return TreeUsage(pss_bytes=pss, fds=fds, processes=count, cpu_percent=cpu)

    def _sample_one(
        self, m: _Member, now: float, exact: bool, periodic: bool
    ) -> tuple[int, int, float] | None:
        """(PSS bytes, fds, CPU percent) of one member; None when it is gone or a zombie."""
        st = _stat(m.pid)
        if st.zombie or st.start != m.start:
            return None
        private = _private(m.pid)
        if exact and not (periodic and self._still(m, private, now)):
            m.pss, m.private_then, m.pss_at = _pss(m.pid), private, now
            self.exact_walks += 1
        pss = max(0, m.pss + private - m.private_then)
        cpu = 0.0
        if m.cpu_ticks >= 0 and now > m.cpu_at:
            cpu = (st.cpu_ticks - m.cpu_ticks) / CLK_TCK / (now - m.cpu_at) * 100
        m.cpu_ticks, m.cpu_at = st.cpu_ticks, now
        if exact or now - m.fds_at >= FDS_MAX_AGE:
            m.fds, m.fds_at = _fd_count(m.pid), now
        return pss, m.fds, cpu

    def _still(self, m: _Member, private: int, now: float) -> bool:
        """Whether a periodic exact measure may keep `m`'s estimate: measured before, its
        private memory within STILL_BYTES of then, and not for STILL_PERIODS periods."""
        return (
            m.pss >= 0
            and abs(private - m.private_then) < STILL_BYTES
            and now - m.pss_at < STILL_PERIODS * self.pss_max_age
        )


def measure_tree(root_pid: int, profile_dir: Path | None = None) -> TreeUsage:
    """One exact sample of a tree (PSS measured, not estimated; CPU percent is 0 in one shot).

    Unlike the periodic sampler it also scans every process for the profile dir, so strays
    count even where the caller is not their subreaper."""
    sampler = TreeSampler(root_pid, None)
    usage = sampler.sample(exact=True)
    if profile_dir is None:
        return usage
    for proc in profile_processes(profile_dir):
        if proc.pid in sampler.pids:
            continue
        with contextlib.suppress(OSError, *GONE):
            usage = TreeUsage(
                pss_bytes=usage.pss_bytes + _pss(proc.pid),
                fds=usage.fds + _fd_count(proc.pid),
                processes=usage.processes + 1,
                cpu_percent=0.0,
            )
    return usage
