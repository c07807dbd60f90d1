"""Sessions benchmark: wasupd's supervised session against a bare Chromium on the same page.

Side by side in one run, same build, same simulator page, same end state (the QR on screen):
start-to-ready seconds and PSS of the whole tree (medians, ratios), stop time; then a capacity
run of N linked sessions with traffic in and out (`bench/capacity.py`): memory, start time of
the Nth, time to link all, daemon CPU, restarts, messages lost, stop time; a build that does not
fit above the memory reserve is reported as "fits N of 100" with its projection.

    python bench/sessions.py [--runs 5] [--capacity 50] [--hold 60] [--build full|headless-shell|both]
                             [--rate 1] [--reserve-mib 2048] [--reserve-share 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.capacity import capacity
from bench.common import exit_on_sigterm
from bench.outbox import PEER
from bench.sessions_bare import BareResult, bare_session
from tests.helpers.daemon import DaemonProcess, base_config, make_dirs
from tests.helpers.sim import SimProcess
from wasupd.config import BrowserBuild
from wasupd.watchdogs.resources import measure_tree


def wasupd_once(d: DaemonProcess, name: str, build: BrowserBuild) -> BareResult:
    """One session through the daemon, measured exactly as `bare_session` measures its browser."""
    t0 = time.perf_counter()
    d.call("session.create", name=name, options={"build": build})
    while d.call("session.get", name=name, history=0)["state"] != "qr":
        time.sleep(0.02)
    ready = time.perf_counter() - t0
    time.sleep(2)  # the same settle time the bare browser is given
    pid = d.call("session.get", name=name, history=0)["pid"]
    usage = measure_tree(pid)
    t1 = time.perf_counter()
    d.call("session.stop", name=name)
    stop = time.perf_counter() - t1
    d.call("session.delete", name=name)
    return BareResult(ready, usage.pss_bytes, usage.processes, stop)


def side_by_side(url: str, d: DaemonProcess, build: BrowserBuild, runs: int) -> None:
    """`runs` bare browsers and `runs` daemon sessions, interleaved so noise hits both alike."""
    bare: list[BareResult] = []
    ours: list[BareResult] = []
    for i in range(runs):
        bare.append(asyncio.run(bare_session(url, build)))
        ours.append(wasupd_once(d, f"b{build[:1]}{i}", build))
    print(f"\n[{build}] {runs} runs each, medians")
    print(f"{'':22}{'bare':>12}{'wasupd':>12}{'ratio':>8}")
    for label, field, scale, fmt in (
        ("start-to-ready s", "ready_s", 1.0, "{:.2f}"),
        ("PSS MiB", "pss_bytes", 1 / (1 << 20), "{:.0f}"),
        ("processes", "processes", 1.0, "{:.0f}"),
        ("stop s", "stop_s", 1.0, "{:.2f}"),
    ):
        b = statistics.median(getattr(r, field) for r in bare)
        o = statistics.median(getattr(r, field) for r in ours)
        print(f"{label:22}{fmt.format(b * scale):>12}{fmt.format(o * scale):>12}{o / b:>8.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--capacity", type=int, default=50)
    p.add_argument("--hold", type=float, default=60.0)
    p.add_argument("--build", default="both", choices=["full", "headless-shell", "both"])
    p.add_argument("--rate", type=float, default=1.0, help="messages/min in and out per session")
    p.add_argument("--reserve-mib", type=int, default=2048, help="memory left to the host")
    p.add_argument("--reserve-share", type=float, default=0.10, help="... or this share of RAM")
    args = p.parse_args()
    builds: list[BrowserBuild] = (
        ["full", "headless-shell"] if args.build == "both" else [args.build]
    )
    phones = {
        build: [f"1555{k}00{i:04d}" for i in range(args.capacity)] for k, build in enumerate(builds)
    }
    sim = SimProcess(1.0, [PEER, *(p for b in builds for p in phones[b])])
    try:
        if args.runs:
            side_by_sides(sim, builds, args.runs)
        for build in builds:
            if args.capacity:
                capacity(
                    sim,
                    build,
                    phones[build],
                    args.hold,
                    rate=args.rate,
                    reserve_mib=args.reserve_mib,
                    reserve_share=args.reserve_share,
                )
    finally:
        sim.stop()


def side_by_sides(sim: SimProcess, builds: list[BrowserBuild], runs: int) -> None:
    """The side-by-side runs of every build on one daemon."""
    root, runtime, state = make_dirs()
    d = DaemonProcess(
        root,
        base_config(
            runtime,
            state,
            browser={"url": sim.url},
            daemon={"log_level": "warning", "start_stagger": 0.05},
            limits={"max_sessions": 200, "host_memory_reserve_mib": 512},
        ),
    ).start()
    try:
        for build in builds:
            side_by_side(sim.url, d, build, runs)
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
