"""Messaging benchmark: the real daemon, real Chromium and the simulator, pacing off.

- link time: `session.create` -> a QR on offer (`session.qr` answers), median over the sessions;
- send latency: from `message.send` accepted (the reply came: the message is durable) to the
  simulator's phone having it, one message at a time, p50 / p99 (target p50 < 50 ms);
- throughput: `--messages` per session queued at once, then until the phone has them all; one
  session, then `--sessions` sessions in parallel (target > 1,000 messages/minute across 10).

Every wait has a deadline and the whole run stops after `--budget` seconds (default 300).

    python bench/messaging.py [--sessions 10] [--messages 100] [--build full|headless-shell]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import exit_on_sigterm
from tests.helpers.daemon import DaemonProcess, base_config, make_dirs
from tests.helpers.sim import SimProcess
from wasupd.rpc.client import AsyncClient

LATENCY_PEER = "15559990001"
BURST_PEER = "15559990002"
TIME_FACTOR = 0.2  # QR refs, sync and acks 5x faster than real WhatsApp; sends are not scaled


class Budget:
    """The run's deadline; `wait` polls a condition until it holds or the budget is spent."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def wait(self, fn: Callable[[], Any], what: str, interval: float = 0.0) -> Any:
        while time.monotonic() < self.end:
            if result := fn():
                return result
            if interval:
                time.sleep(interval)  # polling the simulator over HTTP, bounded by the budget
        raise TimeoutError(f"benchmark budget spent while waiting for {what}")


def count(sim: SimProcess, phone: str) -> int:
    """Messages the simulator delivered to `phone` so far."""
    return len(sim.call("received", phone=phone))


def link(d: DaemonProcess, sim: SimProcess, name: str, phone: str, budget: Budget) -> float:
    """Create session `name`, time until its QR is on offer, then have `phone` scan it."""
    t0 = time.perf_counter()
    d.call("session.create", name=name)
    qr = d.call("session.qr", name=name, wait=60)
    shown = time.perf_counter() - t0
    sim.call("scan", payload=qr["payload"], phone=phone)
    budget.wait(
        lambda: d.call("session.get", name=name, history=0)["state"] == "connected",
        f"{name} connected",
        0.05,
    )
    return shown


def latency(d: DaemonProcess, sim: SimProcess, name: str, n: int, budget: Budget) -> list[float]:
    """Milliseconds from `message.send` accepted to the phone having it, one at a time."""
    out = []
    with d.client() as c:
        for i in range(n):
            before = count(sim, LATENCY_PEER)
            c.call("message.send", to=LATENCY_PEER, text=f"latency {i}", session=name)
            t0 = time.perf_counter()
            budget.wait(lambda: count(sim, LATENCY_PEER) > before, "a message to arrive")  # noqa: B023
            out.append((time.perf_counter() - t0) * 1000)
    return out


async def queue_all(d: DaemonProcess, names: list[str], per: int) -> None:
    """Queue `per` messages for each session at once (one connection, pipelined calls)."""
    async with AsyncClient(d.socket) as c:
        calls = [
            c.call("message.send", to=BURST_PEER, text=f"burst {n} {i}", session=n)
            for n in names
            for i in range(per)
        ]
        await asyncio.gather(*calls)


def throughput(
    d: DaemonProcess, sim: SimProcess, names: list[str], per: int, budget: Budget
) -> float:
    """Messages per minute from queueing `per` per session until the phone has them all."""
    target = count(sim, BURST_PEER) + len(names) * per
    t0 = time.perf_counter()
    asyncio.run(queue_all(d, names, per))
    budget.wait(lambda: count(sim, BURST_PEER) >= target, "the burst to arrive", 0.05)
    return len(names) * per / (time.perf_counter() - t0) * 60


def pct(sorted_ms: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of already sorted values."""
    return sorted_ms[min(len(sorted_ms) - 1, max(0, round(q * len(sorted_ms)) - 1))]


def table(rows: list[tuple[str, str, str]]) -> None:
    """Print metric / value / target columns."""
    width = max(len(r[0]) for r in rows)
    print(f"{'metric':<{width}}  {'value':>12}  target")
    for metric, value, target in rows:
        print(f"{metric:<{width}}  {value:>12}  {target}")


def run(args: argparse.Namespace, sim: SimProcess, d: DaemonProcess) -> None:
    budget = Budget(args.budget)
    names = [f"s{i}" for i in range(args.sessions)]
    phones = [f"1555000{i:04d}" for i in range(args.sessions)]
    links = sorted(link(d, sim, n, p, budget) for n, p in zip(names, phones, strict=True))
    lat = sorted(latency(d, sim, names[0], args.messages, budget))
    one = throughput(d, sim, names[:1], args.messages, budget)
    many = throughput(d, sim, names, args.messages, budget)
    table(
        [
            ("link time, create -> QR shown (median)", f"{statistics.median(links):.2f} s", ""),
            ("send latency accepted -> received p50", f"{pct(lat, 0.5):.1f} ms", "< 50 ms"),
            ("send latency accepted -> received p99", f"{pct(lat, 0.99):.1f} ms", ""),
            ("throughput, 1 session", f"{one:.0f} /min", ""),
            (f"throughput, {len(names)} sessions in parallel", f"{many:.0f} /min", "> 1000 /min"),
        ]
    )
    print(
        f"({len(names)} sessions, {args.messages} messages each, build {args.build},"
        f" simulator time factor {TIME_FACTOR}, {len(lat)} latency samples)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--messages", type=int, default=100, help="per session, and latency samples")
    p.add_argument("--build", choices=["full", "headless-shell"], default="full")
    p.add_argument("--budget", type=float, default=300.0, help="stop after this many seconds")
    args = p.parse_args()
    phones = [f"1555000{i:04d}" for i in range(args.sessions)]
    sim = SimProcess(TIME_FACTOR, [*phones, LATENCY_PEER, BURST_PEER])
    root, runtime, state = make_dirs()
    sections: dict[str, dict[str, Any]] = {
        "browser": {"url": sim.url, "build": args.build, "executable": ""},
        "daemon": {"log_level": "warning"},
        "limits": {"max_sessions": max(50, args.sessions)},
    }
    d = DaemonProcess(root, base_config(runtime, state, **sections)).start()
    try:
        run(args, sim, d)
    finally:
        d.stop()
        sim.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
