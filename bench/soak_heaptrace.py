"""The daemon under tracemalloc, for `bench/soak.py --trace-heap`: where its heap grows.

Run as `python bench/soak_heaptrace.py SNAPSHOT_PREFIX --config FILE`: the daemon's own main
with every Python allocation traced (10 frames), and SIGUSR2 writing a snapshot to
`SNAPSHOT_PREFIX-N` (N counting from 1). `compare(first, last)` lists the tracebacks whose
memory grew most between two snapshots. Tracing slows the daemon (about 2x CPU) and holds
its own bookkeeping: a diagnostic run, not one whose figures go in the benchmarks' tables.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import tracemalloc
from pathlib import Path
from typing import Any


def compare(first: Path, last: Path, top: int = 15) -> list[str]:
    """The `top` tracebacks whose traced memory grew most from `first` to `last`."""
    old = tracemalloc.Snapshot.load(str(first))
    new = tracemalloc.Snapshot.load(str(last))
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = new.filter_traces(ignore).compare_to(old.filter_traces(ignore), "traceback")
    out = []
    for stat in stats[:top]:
        where = " < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in stat.traceback[:6])
        out.append(f"{stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {where}")
    return out


def main() -> None:
    prefix, argv = sys.argv[1], sys.argv[2:]
    written = 0

    def dump(*_: Any) -> None:
        nonlocal written
        written += 1
        tmp = f"{prefix}-{written}.tmp"
        tracemalloc.take_snapshot().dump(tmp)
        os.rename(tmp, f"{prefix}-{written}")  # whole, or not there: the soak waits for it

    tracemalloc.start(10)
    signal.signal(signal.SIGUSR2, dump)
    sys.argv = ["wasupd.daemon", *argv]
    runpy.run_module("wasupd.daemon", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
