"""Resource use of one browser tree: PSS (not RSS sums), fds, process count, CPU.

PSS divides shared pages (the zygote's, libraries) among the processes that map them, so the sum
over a tree is what the tree really costs; RSS sums count shared pages once per process.
`TreeSampler` keeps its `psutil.Process` objects between samples so CPU percentages are
meaningful and a sample stays cheap.
"""

from __future__ import annotations

import contextlib

import psutil

from wasupd.supervision.seams import TreeUsage


class TreeSampler:
    """Samples the tree rooted at `root_pid` (the browser and all its descendants)."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self._procs: dict[int, psutil.Process] = {}

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.root_pid)
            members = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        live: dict[int, psutil.Process] = {}
        for p in members:
            # Reuse the cached object (it holds the previous CPU times) when it is the same process.
            cached = self._procs.get(p.pid)
            live[p.pid] = cached if cached is not None and cached == p else p
        self._procs = live
        return list(live.values())

    def sample(self) -> TreeUsage:
        """One sample; processes that vanish mid-sample are skipped."""
        pss = fds = count = 0
        cpu = 0.0
        for p in self._tree():
            with contextlib.suppress(
                psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess
            ):
                with p.oneshot():
                    pss += p.memory_full_info().pss
                    fds += p.num_fds()
                    cpu += p.cpu_percent(None)
                count += 1
        return TreeUsage(pss_bytes=pss, fds=fds, processes=count, cpu_percent=cpu)
