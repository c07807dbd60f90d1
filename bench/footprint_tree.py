"""Memory of a process tree split by kind of process, from /proc/<pid>/smaps_rollup.

A kind is what the process is for: the driver (Node or the daemon) at the root, Chromium's
browser process, and its helpers by the `--type=` of their command line (renderer, gpu-process,
utility with its `--utility-sub-type=` service, zygote; a renderer with `--top-chrome-webui`
hosts the full build's own browser UI, not a page), the crashpad handler, and Debian's
`/bin/sh` wrapper that stays as the browser's parent. Per process the kernel reports:

- PSS: each resident page divided by the number of processes mapping it. Summed over a tree it
  is what the tree costs, but other Chromiums on the host (teammates', other sessions) share
  library pages with it and lower it.
- USS (Private_Clean + Private_Dirty): pages only this process maps. Not moved by other
  processes; it misses the shared pages the tree does pay for.
- PSS by backing: anonymous (heaps), file (binary and libraries), shmem (shared memory that
  Chromium's processes pass between them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

KB = 1024
# Print order of the kinds; a kind not listed here (an unknown utility service) sorts last.
KINDS = (
    "driver",
    "wrapper",
    "browser",
    "renderer",
    "renderer (browser UI)",
    "gpu",
    "network",
    "storage",
    "audio",
    "utility (other)",
    "zygote",
    "crashpad",
    "other",
)
UTILITY = {"network.mojom.NetworkService": "network", "storage.mojom.StorageService": "storage"}
GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError)


@dataclass(slots=True)
class Mem:
    """Bytes of one process or a sum of several (`processes` counts them)."""

    pss: int = 0
    uss: int = 0
    pss_anon: int = 0
    pss_file: int = 0
    pss_shmem: int = 0
    pss_dirty: int = 0  # PSS of dirty pages: not moved by other Chromiums sharing clean ones
    processes: int = 0

    def add(self, other: Mem) -> None:
        """Add `other` into this sum."""
        self.pss += other.pss
        self.uss += other.uss
        self.pss_anon += other.pss_anon
        self.pss_file += other.pss_file
        self.pss_shmem += other.pss_shmem
        self.pss_dirty += other.pss_dirty
        self.processes += other.processes


@dataclass(slots=True)
class TreeMem:
    """A tree's memory: the total and the split by kind."""

    total: Mem = field(default_factory=Mem)
    kinds: dict[str, Mem] = field(default_factory=dict)
    pids: dict[int, str] = field(default_factory=dict)  # pid -> kind, for the breakdown
    each: dict[int, Mem] = field(default_factory=dict)  # pid -> its own figures


def rollup(pid: int) -> Mem:
    """One process's smaps_rollup (OSError if it is gone or not ours to read)."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        fields = {}
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                fields[key] = int(parts[0]) * KB
    return Mem(
        pss=fields.get("Pss", 0),
        uss=fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
        pss_anon=fields.get("Pss_Anon", 0),
        pss_file=fields.get("Pss_File", 0),
        pss_shmem=fields.get("Pss_Shmem", 0),
        pss_dirty=fields.get("Pss_Dirty", 0),
        processes=1,
    )


def kind_of(cmdline: list[str]) -> str:
    """The kind of a Chromium process (or its wrapper) from its command line."""
    # Helpers rewrite their title into one space-separated string: split it as psutil does.
    args = cmdline[0].split(" ") if len(cmdline) == 1 else cmdline
    exe = os.path.basename(args[0]) if args else ""
    if "crashpad" in exe:
        return "crashpad"
    if exe in ("sh", "bash", "dash"):
        return "wrapper"
    opts = dict(a[2:].partition("=")[::2] for a in args if a.startswith("--"))
    kind = opts.get("type")
    if kind is None:
        return "browser" if "chromium" in exe or "chrome" in exe else "other"
    if kind == "renderer" and "top-chrome-webui" in opts:
        return "renderer (browser UI)"  # the full build's own WebUI (omnibox popup), no page
    if kind == "gpu-process":
        return "gpu"
    if kind == "utility":
        sub = opts.get("utility-sub-type", "")
        return UTILITY.get(sub, "audio" if "audio" in sub else "utility (other)")
    return kind if kind in KINDS else "other"


def tree_pids(root: int, marker: Path) -> list[int]:
    """`root`, its descendants, and any process whose command line names a path under `marker`
    (a crashpad handler double-forks away from its browser; the profiles all live under
    `marker`)."""
    pids = {root}
    with contextlib.suppress(*GONE):
        pids.update(p.pid for p in psutil.Process(root).children(recursive=True))
    pids.update(p.pid for p in naming(marker))
    return sorted(pids)


def adopted_crashpads() -> list[psutil.Process]:
    """Crashpad handlers re-parented to this process (a child subreaper): Debian's full
    Chromium double-forks them away from the browser, and their command line names no
    profile, so only the subreaper that adopted them can tell whose they are."""
    found = []
    with contextlib.suppress(*GONE):
        for child in psutil.Process().children():
            with contextlib.suppress(*GONE):
                if "crashpad" in child.name():
                    found.append(child)
    return found


def naming(marker: Path) -> list[psutil.Process]:
    """Live processes whose command line names `marker` or a path under it."""
    text, found = str(marker), []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(*GONE):
            if any(text in arg for arg in proc.info["cmdline"] or ()):
                found.append(proc)
    return found


def measure(root: int, marker: Path, extra: Iterable[int] = (), *, driver: bool = True) -> TreeMem:
    """The tree of `root` (see `tree_pids`) and the processes in `extra`; `root` itself is
    counted as the "driver" (Node or the daemon) unless `driver` is false (a bare browser)."""
    out = TreeMem()
    for pid in sorted({*tree_pids(root, marker), *extra}):
        with contextlib.suppress(*GONE):
            is_driver = driver and pid == root
            kind = "driver" if is_driver else kind_of(psutil.Process(pid).cmdline())
            mem = rollup(pid)
            out.kinds.setdefault(kind, Mem()).add(mem)
            out.total.add(mem)
            out.pids[pid] = kind
            out.each[pid] = mem
    return out


def kind_order(kind: str) -> int:
    """Sort key: the order of `KINDS`, unknown kinds last."""
    return KINDS.index(kind) if kind in KINDS else len(KINDS)
