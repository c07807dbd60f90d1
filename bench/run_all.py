"""`make bench`: every benchmark in turn, each printing its own table (see docs/benchmarks.md).

The whole run takes about two hours on a 2-core machine (the capacity run links up to 100
sessions of each browser build, as many as fit above the memory reserve, and holds them with
traffic for 10 minutes; the soak runs 20 sessions through a compressed week in 20 minutes; the
flags run launches about 150 browsers in some 20 minutes, the outbox run delivers for 5
minutes, the campaign run takes about 4, the footprint run about 3, the levers run about 12). `BENCH_QUICK=1` shortens
the holds and sizes for a smoke run; its figures are not the ones the targets are judged on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FULL = [
    ["rpc.py"],
    ["profiles.py"],
    ["messaging.py"],
    ["media.py"],
    ["outbox.py", "--sessions", "50", "--minutes", "5"],
    ["flags.py", "--runs", "3", "--budget", "1500"],
    ["footprint.py", "--runs", "3"],
    ["footprint.py", "--breakdown"],
    ["footprint_levers.py", "--sessions", "3", "--rounds", "2"],
    ["retention.py"],
    ["store.py"],
    ["fleet.py", "--runs", "5"],
    ["campaigns.py", "--create", "100000", "--deliver", "5000", "--numbers", "10"],
    ["sessions.py", "--capacity", "100", "--hold", "600"],
    ["soak.py", "--sessions", "20", "--days", "7", "--minutes", "20"],
]
QUICK = [
    ["rpc.py", "--requests", "1600", "--rounds", "1"],
    ["profiles.py", "--messages", "1000", "--synthetic-mib", "16", "--checkpoints", "2"],
    ["messaging.py", "--sessions", "2", "--messages", "20", "--budget", "60"],
    ["media.py", "--files", "2", "--budget", "120"],
    ["outbox.py", "--sessions", "2", "--minutes", "0.5", "--enqueue", "1000"],
    ["flags.py", "--runs", "1", "--budget", "60", "--only", "adopted"],
    ["footprint.py", "--runs", "1", "--sessions", "2"],
    ["footprint_levers.py", "--sessions", "1", "--only", "MALLOC_ARENA_MAX=1"],
    ["retention.py", "--rows", "20000", "--runs", "1"],
    ["store.py", "--messages", "400", "--runs", "1"],
    ["fleet.py", "--runs", "1", "--enqueue", "1000"],
    ["campaigns.py", "--create", "10000", "--deliver", "300", "--numbers", "3"],
    ["sessions.py", "--runs", "1", "--capacity", "3", "--hold", "5"],
    ["soak.py", "--sessions", "2", "--days", "2", "--minutes", "1.5", "--samples", "15"],
]


def main() -> int:
    runs = QUICK if os.environ.get("BENCH_QUICK") else FULL
    status = 0
    for args in runs:
        print(f"\n######## bench/{' '.join(args)}", flush=True)
        t0 = time.monotonic()
        child = subprocess.Popen([sys.executable, str(HERE / args[0]), *args[1:]])
        # A stopped `make bench` stops the running benchmark the way it cleans up after itself.
        signal.signal(signal.SIGTERM, lambda _signum, _frame: child.terminate())  # noqa: B023
        rc = child.wait()
        if rc == -signal.SIGTERM or rc == 128 + signal.SIGTERM:
            return rc
        print(f"######## exit {rc} after {time.monotonic() - t0:.0f} s", flush=True)
        status |= rc
    return status


if __name__ == "__main__":
    sys.exit(main())
