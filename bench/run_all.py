"""`make bench`: every benchmark in turn, each printing its own table (see docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = [
    ["rpc.py"],
    ["profiles.py"],
    ["messaging.py"],
    ["sessions.py", "--capacity", "50", "--hold", "60"],
]


def main() -> int:
    status = 0
    for args in RUNS:
        print(f"\n######## bench/{' '.join(args)}", flush=True)
        status |= subprocess.run([sys.executable, str(HERE / args[0]), *args[1:]]).returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
