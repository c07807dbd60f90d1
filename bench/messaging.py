"""Messaging benchmark against the simulator with real Chromium, pacing off.

Link time (create -> QR shown), send latency p50/p99 from `message.send` accepted to the
simulator having the message, throughput of 1 session and of N sessions in parallel, and
durable enqueue throughput over RPC (32 concurrent clients).

    python bench/messaging.py [--sessions 10] [--messages 100]
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

from tests.helpers.daemon import DaemonProcess, base_config, make_dirs
from tests.helpers.sim import SimProcess
from wasupd.rpc.client import AsyncClient

PEER = "15559990000"


def wait(fn, timeout: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if r := fn():
            return r
        time.sleep(0.005)
    raise TimeoutError


def link(d: DaemonProcess, sim: SimProcess, name: str, phone: str) -> float:
    t0 = time.perf_counter()
    d.call("session.create", name=name)
    qr = d.call("session.qr", name=name, wait=60)
    shown = time.perf_counter() - t0
    sim.call("scan", payload=qr["payload"], phone=phone)
    wait(lambda: d.call("session.get", name=name, history=0)["state"] == "connected")
    return shown


def latency(d: DaemonProcess, sim: SimProcess, name: str, n: int) -> list[float]:
    out = []
    with d.client() as c:
        for i in range(n):
            before = len(sim.call("received", phone=PEER))
            t0 = time.perf_counter()
            c.call("message.send", to=PEER, text=f"lat {name} {i}", session=name)
            wait(lambda b=before: len(sim.call("received", phone=PEER)) > b)
            out.append((time.perf_counter() - t0) * 1000)
    return out


async def burst(d: DaemonProcess, names: list[str], per: int) -> None:
    async with AsyncClient(d.socket) as c:
        await asyncio.gather(
            *(
                c.call("message.send", to=PEER, text=f"tp {n} {i}", session=n)
                for n in names
                for i in range(per)
            )
        )


def throughput(d: DaemonProcess, sim: SimProcess, names: list[str], per: int) -> float:
    before = len(sim.call("received", phone=PEER))
    t0 = time.perf_counter()
    asyncio.run(burst(d, names, per))
    wait(lambda: len(sim.call("received", phone=PEER)) >= before + len(names) * per, 600)
    return len(names) * per / (time.perf_counter() - t0) * 60


async def enqueue_rate(d: DaemonProcess, total: int, clients: int) -> float:
    async def one(k: int) -> None:
        async with AsyncClient(d.socket) as c:
            for i in range(total // clients):
                await c.call("message.send", to=PEER, text=f"q{k}-{i}", session="parked")

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(clients)))
    return total / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--messages", type=int, default=100)
    args = p.parse_args()
    phones = [f"1555000{i:04d}" for i in range(args.sessions)]
    sim = SimProcess(0.2, [*phones, PEER])
    root, runtime, state = make_dirs()
    d = DaemonProcess(
        root, base_config(runtime, state, browser={"url": sim.url}, daemon={"log_level": "warning"})
    ).start()
    try:
        links = [link(d, sim, f"s{i}", phone) for i, phone in enumerate(phones)]
        lat = sorted(latency(d, sim, "s0", args.messages))
        one = throughput(d, sim, ["s0"], args.messages)
        many = throughput(d, sim, [f"s{i}" for i in range(args.sessions)], args.messages)
        d.call("session.create", name="parked", start=False)
        rate = asyncio.run(enqueue_rate(d, 4000, 32))
        print(
            f"link time (create -> QR shown), median of {len(links)}: {statistics.median(links):.2f} s"
        )
        print(
            f"send latency accepted -> received: p50 {lat[len(lat) // 2]:.1f} ms, "
            f"p99 {lat[int(len(lat) * 0.99) - 1]:.1f} ms (target p50 < 50 ms)"
        )
        print(f"throughput, 1 session: {one:.0f} msgs/min")
        print(
            f"throughput, {args.sessions} sessions in parallel: {many:.0f} msgs/min (target > 1000)"
        )
        print(f"durable enqueue over RPC, 32 clients: {rate:.0f} msgs/s (target > 2000)")
    finally:
        d.stop()
        sim.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
