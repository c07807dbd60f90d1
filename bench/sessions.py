"""Sessions benchmark: wasupd's supervised session against a bare Chromium on the same page.

Side by side in one run, same build, same simulator page, same end state (the QR on screen):
start-to-ready seconds and PSS of the whole tree (medians, ratios), stop time; then a capacity
run of N concurrent sessions: total PSS, start time of the Nth, daemon CPU at idle, restarts.

    python bench/sessions.py [--runs 5] [--capacity 50] [--hold 60] [--build full|headless-shell|both]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import exit_on_sigterm
from bench.outbox import link_all
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


def capacity(
    d: DaemonProcess, sim: SimProcess, build: BrowserBuild, phones: list[str], hold: float
) -> None:
    """All sessions created at once (a daemon restart's herd), each linked as its QR shows,
    then held idle and connected for `hold` seconds: memory, daemon CPU, restarts."""
    n = len(phones)
    names = [f"c{build[:1]}{i:02d}" for i in range(n)]
    linked = link_all(d, sim, names, phones, batch=n, options={"build": build})
    daemon = psutil.Process(d.proc.pid)  # type: ignore[union-attr]
    before = {s["name"]: s["restarts"] for s in d.call("session.list")}
    time.sleep(5)  # let the last syncs finish before the idle measurement
    c0, w0 = sum(daemon.cpu_times()[:2]), time.monotonic()
    time.sleep(hold)
    cpu = (sum(daemon.cpu_times()[:2]) - c0) / (time.monotonic() - w0) * 100
    sessions = d.call("session.list")
    total_pss = sum(measure_tree(s["pid"]).pss_bytes for s in sessions if s["pid"])
    restarts = sum(s["restarts"] - before[s["name"]] for s in sessions)
    connected = sum(s["state"] == "connected" for s in sessions)
    print(f"\n[{build}] capacity: {n} sessions created at once, each linked as its QR showed")
    print(f"  all {n} connected {linked:.1f} s after the first create (the {n}th ready)")
    print(
        f"  total PSS {total_pss / (1 << 30):.2f} GiB"
        f" ({total_pss / n / (1 << 20):.0f} MiB per session, all {n} measured together)"
    )
    print(
        f"  daemon CPU while {n} sessions idle for {hold:.0f} s: {cpu:.2f}% of one core;"
        f" daemon RSS {daemon.memory_info().rss >> 20} MiB"
    )
    print(f"  restarts during the hold: {restarts}; connected at the end: {connected}/{n}")
    for s in sessions:
        d.call("session.delete", name=s["name"], force=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--capacity", type=int, default=50)
    p.add_argument("--hold", type=float, default=60.0)
    p.add_argument("--build", default="both", choices=["full", "headless-shell", "both"])
    args = p.parse_args()
    builds: list[BrowserBuild] = (
        ["full", "headless-shell"] if args.build == "both" else [args.build]
    )
    phones = {
        build: [f"1555{k}00{i:04d}" for i in range(args.capacity)] for k, build in enumerate(builds)
    }
    sim = SimProcess(1.0, [p for b in builds for p in phones[b]])
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
            side_by_side(sim.url, d, build, args.runs)
        for build in builds:
            if args.capacity:
                capacity(d, sim, build, phones[build], args.hold)
    finally:
        d.stop()
        sim.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
