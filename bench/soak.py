"""Soak: N linked sessions with traffic in and out over a time-compressed week.

The sessions are linked on the simulator at real speed (a QR must live long enough to be
scanned), then the simulator's clock is compressed (`configure(time_factor)`) so that `--days`
simulated days pass in `--minutes` real minutes. Every page grows by the simulator's growth
fault (`--growth` MiB per simulated hour, `--reclaimable` of it a cache that a reclaim drops,
the rest a leak), and traffic flows at a steady rate per simulated day: messages sent through
the daemon's RPC, messages injected inbound by the simulator. Sampled `--samples` times, per
session (PSS, fds and processes of the browser tree) and for the daemon (RSS, PSS, fds,
threads, asyncio tasks, event-loop lag, and its memory by owner: Python objects, malloc in
use and free, SQLite): each one's slope per simulated day (least squares,
with a noise band of two standard errors), reclaims and restarts.

Compressed: the page growth and the traffic. Not compressed: Chromium's own ageing (its
caches, its allocators, V8's own GCs), the daemon's timers (a memory check every
`limits.check_interval` real seconds) and the clock of the daemon's store: those run in real
time, `--minutes` of them.

    python bench/soak.py [--sessions 20] [--days 7] [--minutes 20] [--build headless-shell|full]
                         [--growth 8] [--reclaimable 0.9] [--soft-mib 400]
                         [--out-per-day 50] [--in-per-day 50] [--samples 80]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import exit_on_sigterm
from bench.outbox import PEER, link_all
from bench.soak_heaptrace import compare
from tests.helpers.daemon import DaemonProcess, base_config, make_dirs
from tests.helpers.sim import SimProcess
from wasupd.errors import WasupError
from wasupd.rpc.client import AsyncClient
from wasupd.watchdogs.resources import measure_tree

MIB = 1 << 20
STATUS_TIMEOUT = 60.0  # daemon.status answers inline in ms; a minute without is a stall
CHECK_INTERVAL = 10.0  # limits.check_interval (the default) and, here, the reclaim interval
DAY = 86400.0
# The first seventh of the run (a week's first day) fills caches, pools and the store: left
# out of the fits, which judge how figures move once the daemon has settled.
WARM_UP_SHARE = 1 / 7
# The daemon's memory by owner (daemon.status `memory`, wasupd/heap.py): MiB, objects a count.
HEAP_FIGURES = {
    "python_blocks": "daemon Python objects",
    "malloc_in_use": "daemon malloc in use MiB",
    "malloc_free": "daemon malloc free MiB",
    "malloc_mmap": "daemon malloc mmap MiB",
    "sqlite": "daemon SQLite MiB",
}


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope of `ys` over `xs` and its noise band (two standard errors: a slope
    inside it is what noise around a flat line gives about 95% of the time)."""
    n = len(xs)
    if n < 3:
        return 0.0, float("inf")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, float("inf")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    residuals = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys, strict=True))
    return slope, 2 * (residuals / (n - 2) / sxx) ** 0.5


def machine() -> str:
    """Cores, memory and load: the machine is shared, the load says how much."""
    mem = psutil.virtual_memory()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores, {mem.total / (1 << 30):.0f} GiB "
        f"({mem.available / (1 << 30):.1f} GiB available), load average {load}"
    )


def phones(n: int) -> list[str]:
    """The simulated numbers of the sessions."""
    return [f"1555000{i:04d}" for i in range(n)]


class Series:
    """Samples of named figures against simulated days."""

    def __init__(self, warm_up: float) -> None:
        self.warm_up = warm_up  # simulated days left out of the fits
        self.days: dict[str, list[float]] = defaultdict(list)
        self.values: dict[str, list[float]] = defaultdict(list)

    def add(self, name: str, day: float, value: float) -> None:
        self.days[name].append(day)
        self.values[name].append(value)

    def fit(self, name: str) -> tuple[float, float, float, float]:
        """(slope per day, noise band, first, last value) after the warm-up."""
        pairs = [
            (d, v)
            for d, v in zip(self.days[name], self.values[name], strict=True)
            if d >= self.warm_up
        ]
        if not pairs:
            return 0.0, float("inf"), float("nan"), float("nan")
        xs, ys = [d for d, _ in pairs], [v for _, v in pairs]
        slope, band = fit(xs, ys)
        return slope, band, ys[0], ys[-1]


class Soak:
    """One soak run: the daemon, the simulator, the traffic, the samples."""

    def __init__(self, d: DaemonProcess, sim: SimProcess, args: argparse.Namespace) -> None:
        self.d, self.sim, self.args = d, sim, args
        self.names = [f"s{i:02d}" for i in range(args.sessions)]
        self.phones = phones(args.sessions)
        self.speed: float = args.days * DAY / (args.minutes * 60)  # simulated s per real s
        self.series = Series(args.days * WARM_UP_SHARE)
        self.sent = self.send_failed = self.injected = self.inject_failed = 0
        self.reclaims: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.t0 = self.wall0 = 0.0
        self.unanswered: list[str] = []  # samples the daemon did not answer in time
        self.on_warm: Callable[[], None] | None = None  # called once, when day 1 has passed

    def day(self) -> float:
        """Simulated days since the compressed run began."""
        return (time.monotonic() - self.t0) * self.speed / DAY

    async def run(self) -> None:
        """Traffic, the reclaim watch and the sampler for `--minutes`, then stop them."""
        self.t0, self.wall0 = time.monotonic(), time.time()
        seconds = self.args.minutes * 60
        watch = asyncio.ensure_future(self.watch_reclaims())
        try:
            await asyncio.gather(
                self.send_out(seconds), self.inject_in(seconds), self.sample_all(seconds)
            )
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)

    def every(self, per_day: float) -> float:
        """Real seconds between two messages of a stream of `per_day` per session per day."""
        return DAY / self.speed / (per_day * len(self.names))

    async def send_out(self, seconds: float) -> None:
        """Messages to the peer through `message.send`, round-robin, on a fixed schedule."""
        if self.args.out_per_day <= 0:
            return
        interval = self.every(self.args.out_per_day)
        async with AsyncClient(self.d.socket, timeout=60) as c:
            i = 0
            while (due := i * interval) < seconds:
                await _until(self.t0 + due)
                name = self.names[i % len(self.names)]
                try:
                    await c.call("message.send", to=PEER, text=f"out {i}", session=name)
                    self.sent += 1
                except Exception:
                    self.send_failed += 1
                i += 1

    async def inject_in(self, seconds: float) -> None:
        """Messages from the peer injected by the simulator, round-robin, on a fixed schedule."""
        if self.args.in_per_day <= 0:
            return
        interval = self.every(self.args.in_per_day)
        i = 0
        while (due := i * interval) < seconds:
            await _until(self.t0 + due)
            to, text = self.phones[i % len(self.phones)], f"in {i}"
            try:
                await asyncio.to_thread(self.sim.call, "inject", to=to, text=text, **{"from": PEER})
                self.injected += 1
            except Exception:
                self.inject_failed += 1
            i += 1

    async def watch_reclaims(self) -> None:
        """Every `reclaim` event the daemon publishes, by session."""
        async with AsyncClient(self.d.socket, timeout=60) as c:
            async for ev in c.subscribe(types=["reclaim"]):
                self.reclaims[ev["session"]].append(ev)
                day = (ev["at"] - self.wall0) * self.speed / DAY
                self.series.add("PSS after a reclaim MiB", day, ev["after_mib"])

    async def sample_all(self, seconds: float) -> None:
        """`--samples` samples spread evenly over the run (the last one at its end)."""
        n = self.args.samples
        for k in range(n + 1):
            await _until(self.t0 + seconds * k / n)
            await asyncio.to_thread(self.sample)
            if self.on_warm is not None and self.day() >= self.series.warm_up:
                await asyncio.to_thread(self.on_warm)
                self.on_warm = None

    def sample(self) -> None:
        """One sample of the daemon and of every session's browser tree."""
        day, s = self.day(), self.series
        try:
            status = self.d.call("daemon.status", timeout=STATUS_TIMEOUT)
        except WasupError as exc:  # a stalled daemon is a finding, not the end of the soak
            self.unanswered.append(f"day {day:.2f}: {exc}")
            return
        me = psutil.Process(status["pid"])
        with me.oneshot():
            s.add("daemon RSS MiB", day, me.memory_info().rss / MIB)
            s.add("daemon PSS MiB", day, me.memory_full_info().pss / MIB)
            s.add("daemon fds", day, me.num_fds())
            s.add("daemon threads", day, me.num_threads())
        s.add("daemon tasks", day, status["tasks"])
        for key, label in HEAP_FIGURES.items():  # which owner of the daemon's memory moves
            value = status.get("memory", {}).get(key)
            if value is not None:
                s.add(label, day, value / (1 if key == "python_blocks" else MIB))
        s.add("loop lag ms (worst of 60 s)", day, status["loop_lag"]["max_ms"])
        waiting = sum(info.get("reports_waiting") or 0 for info in status["sessions"])
        s.add("reports waiting (all sessions)", day, waiting)
        for info in status["sessions"]:
            if info["pid"] is None:
                continue
            try:
                u = measure_tree(info["pid"])
            except psutil.Error:  # restarting right now: the next sample sees the new tree
                continue
            name = info["name"]
            s.add(f"{name} PSS MiB", day, u.pss_bytes / MIB)
            s.add(f"{name} fds", day, u.fds)
            s.add(f"{name} processes", day, u.processes)


def _snapshot(d: DaemonProcess) -> None:
    """Have the traced daemon write its next heap snapshot (bench/soak_heaptrace.py: it
    renames the file into place once written), waiting for it up to two minutes."""
    assert d.proc is not None
    n = len(list(d.root.glob("heap-[0-9]*"))) + 1
    d.proc.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 120
    while not (d.root / f"heap-{n}").exists() and time.monotonic() < deadline:
        time.sleep(0.5)  # a snapshot of a traced heap takes seconds to write


async def _until(when: float) -> None:
    """Wait until monotonic time `when` (the schedule of a steady rate)."""
    if (delay := when - time.monotonic()) > 0:
        await asyncio.sleep(delay)


def outbox_counts(d: DaemonProcess) -> dict[str, int]:
    """Outbox messages by state, from the metrics (sent, delivered, read...)."""
    prefix = 'wasupd_outbox_messages{state="'
    lines = d.call("metrics.get")["text"].splitlines()
    pairs = (x[len(prefix) :].split('"} ') for x in lines if x.startswith(prefix))
    return {state: int(float(n)) for state, n in pairs if float(n)}


def print_restart_reasons(d: DaemonProcess, names: list[str]) -> None:
    """Why each restarted session restarted: the reasons of its transitions into backoff."""
    reasons: dict[str, int] = defaultdict(int)
    for name in names:
        for h in d.call("session.get", name=name, history=100)["history"]:
            if h["to"] == "backoff":
                reasons[h["reason"][:100]] += 1
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"  restart x{n}: {reason}")


def report(soak: Soak, restarts: int, states: dict[str, int]) -> None:
    """The slopes, the targets and the counts."""
    a, s = soak.args, soak.series
    leak = a.growth * (1 - a.reclaimable) * 24
    print(f"\nslopes per simulated day, least squares over the samples after day {s.warm_up:.2g}")
    print("(noise: two standard errors of the slope; flat = |slope| within the noise)")
    print(f"{'':30}{'first':>9}{'last':>9}{'slope/day':>11}{'noise':>9}{'x days':>9}  verdict")
    for name in (
        "daemon RSS MiB",
        "daemon PSS MiB",
        "daemon fds",
        "daemon threads",
        "daemon tasks",
        *HEAP_FIGURES.values(),
        "loop lag ms (worst of 60 s)",
        "reports waiting (all sessions)",
    ):
        if not s.values.get(name):
            continue  # a heap figure this system cannot tell
        slope, band, first, last = s.fit(name)
        verdict = "flat" if abs(slope) <= band else ("grows" if slope > 0 else "falls")
        run = slope * a.days  # what the slope adds up to over the whole run
        print(f"{name:30}{first:9.1f}{last:9.1f}{slope:11.2f}{band:9.2f}{run:9.1f}  {verdict}")
    lags = s.values["loop lag ms (worst of 60 s)"]
    print(
        f"  loop lag, worst of 60 s: median {statistics.median(lags):.1f} ms, max {max(lags):.1f} ms"
    )
    print(f"\nsessions ({len(soak.names)}): median and worst of the per-session figures")
    for figure in ("PSS MiB", "fds", "processes"):
        fits = [s.fit(f"{n} {figure}") for n in soak.names if s.values.get(f"{n} {figure}")]
        slopes = sorted(f[0] for f in fits)
        flat = sum(abs(f[0]) <= f[1] for f in fits)
        print(
            f"  {figure:12} slope/day median {statistics.median(slopes):8.2f}, "
            f"lowest {slopes[0]:8.2f}, highest {slopes[-1]:8.2f}; within noise: {flat}/{len(fits)}"
        )
    print(f"  injected leak (growth x unreclaimable share): {leak:.1f} MiB per simulated day")
    if len(s.values["PSS after a reclaim MiB"]) >= 3:
        slope, band, _, _ = s.fit("PSS after a reclaim MiB")
        print(f"  PSS right after each reclaim (all sessions): {slope:.1f} +- {band:.1f} MiB/day")
    pss = [v for n in soak.names for v in s.values.get(f"{n} PSS MiB", [])]
    over = sum(v > a.soft_mib for v in pss)
    print(
        f"  PSS over all samples: median {statistics.median(pss):.0f} MiB, peak {max(pss):.0f} MiB;"
        f" soft limit {a.soft_mib} MiB; samples over it: {over}/{len(pss)}"
    )
    events = [e for evs in soak.reclaims.values() for e in evs]
    per = sorted(len(soak.reclaims.get(n, [])) for n in soak.names)
    freed = [e["before_mib"] - e["after_mib"] for e in events]
    print(
        f"reclaims: {len(events)} (per session: median {statistics.median(per):g}, "
        f"{per[0]}..{per[-1]}); freed per reclaim: median {statistics.median(freed or [0]):.0f} MiB"
    )
    print(f"restarts during the soak: {restarts}; states at the end: {states}")
    print(f"outbox at the end, by state: {outbox_counts(soak.d)}")
    print(f"samples the daemon did not answer within {STATUS_TIMEOUT:g} s: {len(soak.unanswered)}")
    for line in soak.unanswered:
        print(f"  {line}")
    print(
        f"traffic: {soak.sent} sent through message.send ({soak.send_failed} refused), "
        f"{soak.injected} injected inbound ({soak.inject_failed} refused)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--days", type=float, default=7.0, help="simulated days")
    p.add_argument("--minutes", type=float, default=20.0, help="real minutes they take")
    p.add_argument("--build", default="headless-shell", choices=["headless-shell", "full"])
    p.add_argument("--growth", type=float, default=8.0, help="page growth, MiB/simulated hour")
    p.add_argument("--reclaimable", type=float, default=0.9, help="share a reclaim frees")
    p.add_argument("--soft-mib", type=int, default=400, help="limits.memory_soft_mib")
    p.add_argument("--out-per-day", type=float, default=50.0, help="sent, per session per day")
    p.add_argument("--in-per-day", type=float, default=50.0, help="received, per session per day")
    p.add_argument("--samples", type=int, default=80)
    p.add_argument(
        "--trace-heap",
        action="store_true",
        help="run the daemon under tracemalloc and print where its heap grew after day 1"
        " (a diagnostic: tracing costs CPU and memory of its own)",
    )
    args = p.parse_args()
    if min(args.sessions, args.days, args.minutes, args.samples) <= 0:
        p.error("--sessions, --days, --minutes and --samples must be positive")

    sim = SimProcess(1.0, [*phones(args.sessions), PEER])  # linking at real speed
    root, runtime, state = make_dirs()
    cfg = base_config(
        runtime,
        state,
        browser={"url": sim.url, "build": args.build},
        daemon={"log_level": "warning"},
        # The default reclaim_interval (300 s) is a real-time timer: compressed it would be
        # days of page growth between two reclaims. One per check (10 s) is what it means here.
        limits={
            "max_sessions": args.sessions + 1,
            "memory_soft_mib": args.soft_mib,
            "reclaim_interval": CHECK_INTERVAL,
            "check_interval": CHECK_INTERVAL,
        },
    )
    d = DaemonProcess(root, cfg)
    snapshots = root / "heap"  # heap-1 after day 1, heap-2 at the end
    if args.trace_heap:
        d.command = [
            sys.executable,
            str(Path(__file__).with_name("soak_heaptrace.py")),
            str(snapshots),
        ]
    d.start()
    try:
        soak = Soak(d, sim, args)
        soak.on_warm = (lambda: _snapshot(d)) if args.trace_heap else None
        took = link_all(d, sim, soak.names, soak.phones)
        print(f"linked {args.sessions} sessions ({args.build}) in {took:.0f} s", flush=True)
        print(f"machine: {machine()}", flush=True)
        before = {s["name"]: s["restarts"] for s in d.call("session.list")}
        sim.call("configure", time_factor=1 / soak.speed)
        sim.call("fault", kind="growth", mib_per_hour=args.growth, reclaimable=args.reclaimable)
        print(
            f"soak: {args.days:g} simulated days in {args.minutes:g} real minutes "
            f"(1 real s = {soak.speed:.0f} simulated s); compressed: page growth "
            f"({args.growth:g} MiB/simulated hour, {args.reclaimable:.0%} reclaimable) and "
            f"traffic ({args.out_per_day:g} out + {args.in_per_day:g} in per session per "
            f"simulated day); in real time: Chromium's own ageing, the daemon's timers",
            flush=True,
        )
        asyncio.run(soak.run())
        sessions = d.call("session.list")
        restarts = sum(s["restarts"] - before[s["name"]] for s in sessions)
        states: dict[str, int] = defaultdict(int)
        for s in sessions:
            states[s["state"]] += 1
        report(soak, restarts, dict(states))
        if args.trace_heap:
            _snapshot(d)
            print("\nheap growth from the end of day 1 to the end (tracemalloc, by traceback):")
            for line in compare(Path(f"{snapshots}-1"), Path(f"{snapshots}-2")):
                print(f"  {line}")
        print_restart_reasons(d, [x["name"] for x in sessions if x["restarts"] > before[x["name"]]])
        print(f"machine at the end: {machine()}")
    finally:
        d.stop(timeout=180)
        sim.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
