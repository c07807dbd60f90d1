"""Media benchmark: files sent through the real daemon, real Chromium and the simulator.

For each size (1 MiB and 16 MiB by default), `--files` images are uploaded through the control
socket in chunks (`media.upload`), queued (`message.send`), and sent; measured from the first
upload until the simulator's phone has them all:

- throughput in MB/s (of file bytes) and messages per minute;
- the daemon's peak RSS while uploading and sending (psutil, every 20 ms), which must not grow
  with the file size: the daemon never holds a whole file, only 512 KiB chunks.

    python bench/media.py [--sizes 1,16] [--files 8] [--budget 600]
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import exit_on_sigterm
from bench.messaging import Budget, count, link, table
from tests.helpers.daemon import DaemonProcess, base_config, make_dirs
from tests.helpers.sim import SimProcess

SENDER, PEER = "15550000001", "15559990003"
TIME_FACTOR = 0.2
CHUNK = 512 << 10
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"


class PeakRss:
    """The highest RSS of one process while running (a sampling thread)."""

    def __init__(self, pid: int) -> None:
        self.proc, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def send_file(d: DaemonProcess, data: bytes, name: str) -> None:
    """Upload `data` in chunks and queue it from the session `s`."""
    token: str | None = None
    with d.client() as c:
        for offset in range(0, len(data), CHUNK):
            params: dict[str, Any] = {
                "data": base64.b64encode(data[offset : offset + CHUNK]).decode(),
                "offset": offset,
            }
            if token:
                params["token"] = token
            token = c.call("media.upload", **params)["token"]
        c.call("message.send", to=PEER, session="s", file=token, filename=name)


def one_size(
    d: DaemonProcess, sim: SimProcess, mib: int, files: int, budget: Budget
) -> tuple[float, float, int, int]:
    """(MB/s, messages/min, daemon RSS before, peak RSS during) for `files` files of `mib` MiB."""
    blobs = [JPEG + os.urandom((mib << 20) - len(JPEG)) for _ in range(files)]
    assert d.proc is not None
    target = count(sim, PEER) + files
    with PeakRss(d.proc.pid) as rss:
        before = rss.peak
        t0 = time.perf_counter()
        for i, blob in enumerate(blobs):
            send_file(d, blob, f"bench-{mib}-{i}.jpg")
        budget.wait(lambda: count(sim, PEER) >= target, f"{files} files of {mib} MiB", 0.05)
        elapsed = time.perf_counter() - t0
    total = files * (mib << 20)
    return total / elapsed / 1e6, files / elapsed * 60, before, rss.peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="1,16", help="file sizes in MiB, comma-separated")
    p.add_argument("--files", type=int, default=8, help="files per size")
    p.add_argument("--budget", type=float, default=600.0, help="stop after this many seconds")
    args = p.parse_args()
    sim = SimProcess(TIME_FACTOR, [SENDER, PEER])
    root, runtime, state = make_dirs()
    sections: dict[str, dict[str, Any]] = {
        "browser": {"url": sim.url, "executable": ""},
        "daemon": {"log_level": "warning"},
        "send": {"pacing": False},
        "media": {"download": "none"},
    }
    d = DaemonProcess(root, base_config(runtime, state, **sections)).start()
    try:
        budget = Budget(args.budget)
        link(d, sim, "s", SENDER, budget)
        rows = []
        for mib in (int(s) for s in args.sizes.split(",")):
            mbs, per_min, before, peak = one_size(d, sim, mib, args.files, budget)
            rows += [
                (f"{mib} MiB files: throughput", f"{mbs:.1f} MB/s", ""),
                (f"{mib} MiB files: messages per minute", f"{per_min:.0f} /min", ""),
                (
                    f"{mib} MiB files: daemon peak RSS",
                    f"{peak / 2**20:.0f} MiB",
                    f"(before: {before / 2**20:.0f} MiB)",
                ),
            ]
        table(rows)
        print(f"({args.files} files per size, one session, pacing off, time factor {TIME_FACTOR})")
    finally:
        d.stop()
        sim.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
