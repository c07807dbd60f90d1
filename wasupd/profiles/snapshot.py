"""A consistent copy of a running profile, taken without stopping the session.

Chromium keeps writing while we copy: LevelDB appends to its `*.log` and `MANIFEST-*`, writes
new `*.ldb` tables and deletes old ones at compaction, replaces `CURRENT`; SQLite rewrites pages
and its journal. A copy is usable when it equals the directory at one instant (what a crash
would leave), and LevelDB and SQLite both recover from that state by design. A copy torn across
a compaction is not: in the test with real Chromium it comes back as an empty database.

Each unit (one store: a LevelDB dir, a SQLite file and its journal) is copied, then scanned
again. When no file was added, removed, replaced or changed in size or mtime in between, nothing
was written during the copy and the copy is that instant. While the profile is busy (a history
sync writes continuously), a unit may never hold still; then the session's processes are
paused with SIGSTOP (every thread checked stopped), the unit is copied, and they get SIGCONT.
The pause lasts as long as the copy of that one unit, milliseconds: bulk files never change
once written (LevelDB tables, IndexedDB blob files), so they are hard-linked, not copied (this
also spares tmpfs memory). The pause and its length are logged.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from wasupd.errors import ProfileError
from wasupd.profiles.selection import ESSENTIAL_UNITS, unit_files

QUIET_TRIES = 3
PAUSE = 0.01  # seconds between optimistic tries, doubled each time (in the worker thread)
STOP_TIMEOUT = 0.5
IMMUTABLE_SUFFIXES = (".ldb", ".sst")

Signature = dict[Path, tuple[int, int, int]]


@dataclass
class SnapshotReport:
    """How a snapshot went: extra copies, units copied under a pause, the longest pause."""

    recopies: int = 0
    paused_units: list[str] = field(default_factory=list)
    longest_pause: float = 0.0


def signature(root: Path, unit: tuple[str, ...]) -> Signature:
    """(inode, size, mtime ns) of every file of `unit`. Not ctime: our own hard links change it."""
    sig: Signature = {}
    for rel in unit_files(root, unit):
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(root / rel)
            sig[rel] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return sig


def is_immutable(rel: Path) -> bool:
    """Files written once and never changed: LevelDB tables and IndexedDB blob files."""
    return rel.suffix in IMMUTABLE_SUFFIXES or any(
        p.endswith(".indexeddb.blob") for p in rel.parts[:-1]
    )


def _copy_file(live: Path, dest: Path, rel: Path) -> None:
    target = dest / rel
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if is_immutable(rel):
        try:
            os.link(live / rel, target, follow_symlinks=False)
            return
        except OSError:
            pass  # another filesystem, or links not allowed: copy instead
    shutil.copyfile(live / rel, target, follow_symlinks=False)
    shutil.copystat(live / rel, target, follow_symlinks=False)


def _clear_unit(dest: Path, unit: tuple[str, ...]) -> None:
    for rel in unit:
        target = dest / rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def copy_unit(live: Path, dest: Path, unit: tuple[str, ...]) -> bool:
    """Copy one unit once; True when nothing changed meanwhile (else the copy is removed)."""
    before = signature(live, unit)
    for rel in sorted(before):
        with contextlib.suppress(FileNotFoundError):  # deleted under us: the rescan tells
            _copy_file(live, dest, rel)
    if signature(live, unit) == before:
        return True
    _clear_unit(dest, unit)
    return False


def profile_processes(live: Path) -> list[psutil.Process]:
    """The processes of the browser using `live` (every Chromium process names its profile)."""
    marker = f"--user-data-dir={live}"
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if marker in (proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def _all_stopped(pids: list[int]) -> bool:
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                    if stat[stat.rindex(")") + 2] not in "tTZX":
                        return False
    return True


@dataclass
class Pause:
    """The processes paused and, once resumed, for how long they were stopped."""

    pids: list[int] = field(default_factory=list)
    seconds: float = 0.0


@contextlib.contextmanager
def paused(live: Path) -> Iterator[Pause]:
    """SIGSTOP the browser using `live` until the block ends (SIGCONT even on errors). Waits
    until every thread is stopped, so no write is in flight inside the block."""
    procs = profile_processes(live)  # scanned before the pause: it costs nothing to the page
    stopped: list[psutil.Process] = []
    pause = Pause()
    started = time.monotonic()
    try:
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGSTOP)
                stopped.append(proc)
        pause.pids = [p.pid for p in stopped]
        while not _all_stopped(pause.pids):
            if time.monotonic() - started > STOP_TIMEOUT:
                raise ProfileError(f"checkpoint skipped: the browser of {live} did not pause")
            time.sleep(0.0005)  # leave the CPU to the threads that still have to stop
        yield pause
    finally:
        for proc in stopped:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGCONT)
        pause.seconds = time.monotonic() - started


def copy_while_quiet(live: Path, dest: Path, unit: tuple[str, ...], report: SnapshotReport) -> bool:
    """Try to copy one unit while nothing writes to it; False if it never held still."""
    pause = PAUSE
    for attempt in range(QUIET_TRIES):
        if copy_unit(live, dest, unit):
            report.recopies += attempt
            return True
        time.sleep(pause)  # in the worker thread: give the writer time to finish its batch
        pause *= 2
    report.recopies += QUIET_TRIES
    return False


def copy_paused(
    live: Path, dest: Path, units: list[tuple[str, ...]], report: SnapshotReport
) -> None:
    """Copy `units` with the browser paused once for all of them."""
    with paused(live) as stop:
        failed = [unit for unit in units if not copy_unit(live, dest, unit)]
    report.longest_pause = max(report.longest_pause, stop.seconds)
    report.paused_units.extend(unit[0] for unit in units)
    if failed:
        raise ProfileError(
            f"checkpoint skipped: {', '.join(failed[0])} kept changing even with the browser"
            " paused (is another program writing to the live profile?); the previous archive"
            " is kept",
            unit=list(failed[0]),
        )


def snapshot(live: Path, dest: Path) -> SnapshotReport:
    """Copy the essential files of the running profile `live` into the new dir `dest` (0700),
    each unit consistent (see the module docstring); how it went."""
    os.mkdir(dest, 0o700)
    report = SnapshotReport()
    busy = [unit for unit in ESSENTIAL_UNITS if not copy_while_quiet(live, dest, unit, report)]
    if busy:
        copy_paused(live, dest, busy, report)
    return report
