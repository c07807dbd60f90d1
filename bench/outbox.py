"""Outbox benchmark: durable enqueue throughput over RPC, and end-to-end delivery across sessions.

1. Enqueue: `message.send` to a stopped session (nothing is sent, every message is committed
   before its reply), from 1 client and from 32 concurrent clients; messages/s and RPC p50/p99.
2. Delivery, pacing off: N sessions linked to the simulator with real Chromium; a producer
   offers `--rate` messages/minute round-robin over the sessions for `--minutes`; reported: the
   rate actually sent, the backlog at the end, and queue-to-sent latency p50/p99/max
   (`sent_at - created_at`, both stamped by the daemon).

    python bench/outbox.py [--sessions 50] [--rate 1000] [--minutes 5] [--enqueue 10000]
                           [--build headless-shell|full]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import exit_on_sigterm
from tests.helpers.daemon import DaemonProcess, base_config, make_dirs
from tests.helpers.sim import SimProcess
from wasupd.rpc.client import AsyncClient

PEER = "15559990000"


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


async def _clients(socket: Path, total: int, clients: int, tag: str) -> list[float]:
    """`total` sends over `clients` concurrent connections; their RPC latencies in ms."""
    lat: list[float] = []

    async def one(k: int) -> None:
        async with AsyncClient(socket) as c:
            for i in range(total // clients):
                t0 = time.perf_counter()
                await c.call("message.send", to=PEER, text=f"q{tag}-{k}-{i}", session="parked")
                lat.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(one(k) for k in range(clients)))
    return lat


def _client_process(args: tuple[Path, int, int, str]) -> list[float]:
    return asyncio.run(_clients(*args))


def enqueue_run(
    d: DaemonProcess, total: int, clients: int, procs: int
) -> tuple[float, list[float]]:
    """`total` sends from `clients` connections spread over `procs` client processes (so the
    client's own CPU is not the limit); (messages/s, RPC latencies in ms)."""
    per = total // procs
    jobs = [
        (d.socket, per, max(1, clients // procs), f"{time.time_ns()}-{p}") for p in range(procs)
    ]
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        results = pool.map(_client_process, jobs)
    elapsed = time.perf_counter() - t0
    lat = [x for r in results for x in r]
    return len(lat) / elapsed, lat


def link_all(
    d: DaemonProcess,
    sim: SimProcess,
    names: list[str],
    phones: list[str],
    *,
    batch: int = 5,
    options: dict[str, Any] | None = None,
) -> float:
    """Create the sessions `batch` at a time, scan each QR as it appears; seconds until all are
    connected."""
    t0 = time.perf_counter()
    pairs = list(zip(names, phones, strict=True))
    for k in range(0, len(pairs), batch):
        for name, _ in pairs[k : k + batch]:
            d.call("session.create", name=name, options=options or {})
        for name, phone in pairs[k : k + batch]:
            scan(d, sim, name, phone)
    deadline = time.monotonic() + 600
    while any(s["state"] != "connected" for s in d.call("session.list") if s["name"] in names):
        if time.monotonic() > deadline:
            raise TimeoutError("sessions did not all connect within 10 minutes")
        time.sleep(1)  # polling another process, bounded by the deadline
    return time.perf_counter() - t0


def scan(d: DaemonProcess, sim: SimProcess, name: str, phone: str) -> None:
    """Wait for `name`'s QR and scan it with `phone`'s simulated phone."""
    for attempt in range(5):  # a QR may rotate between reading and scanning it
        qr = d.call("session.qr", name=name, wait=300, timeout=330)
        try:
            sim.call("scan", payload=qr["payload"], phone=phone)
            return
        except RuntimeError:
            if attempt == 4:
                raise


async def produce(d: DaemonProcess, names: list[str], rate: float, seconds: float) -> list[str]:
    """Offer `rate` messages/minute round-robin over `names` for `seconds` (on schedule, not
    waiting for replies: a slow reply must not lower the offered load); their ids."""
    interval = 60.0 / rate
    calls: list[asyncio.Task[Any]] = []
    async with AsyncClient(d.socket, timeout=120) as c:
        start = time.monotonic()
        i = 0
        while (now := time.monotonic()) - start < seconds:
            due = start + i * interval
            if due > now:
                await asyncio.sleep(due - now)  # the offered load's schedule
            text, name = f"e2e {i}", names[i % len(names)]
            calls.append(
                asyncio.ensure_future(c.call("message.send", to=PEER, text=text, session=name))
            )
            i += 1
        msgs = await asyncio.gather(*calls)
    return [m["id"] for m in msgs]


def delivery_report(d: DaemonProcess, ids: list[str], window: float) -> dict[str, Any]:
    rows = {m["id"]: m for m in d.call("outbox.list", state=None, limit=1_000_000, timeout=120)}
    mine = [rows[i] for i in ids if i in rows]
    sent = [m for m in mine if m.get("sent_at")]
    lat = [(m["sent_at"] - m["created_at"]) * 1000 for m in sent]
    t_first = min(m["created_at"] for m in mine)
    in_window = [m for m in sent if m["sent_at"] <= t_first + window]
    return {
        "offered": len(mine),
        "sent": len(sent),
        "sent_per_min_in_window": len(in_window) / (window / 60),
        "backlog_at_end": len(mine) - len(in_window),
        "p50_ms": pct(lat, 50) if lat else None,
        "p99_ms": pct(lat, 99) if lat else None,
        "max_ms": max(lat) if lat else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sessions", type=int, default=50)
    p.add_argument("--rate", type=float, default=1000.0, help="messages offered per minute")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--enqueue", type=int, default=10000, help="messages in the enqueue test")
    p.add_argument("--clients", type=int, default=32, help="concurrent connections (enqueue)")
    p.add_argument("--build", default="headless-shell", choices=["headless-shell", "full"])
    args = p.parse_args()

    phones = [f"1555000{i:04d}" for i in range(args.sessions)]
    sim = SimProcess(1.0, [*phones, PEER])  # real QR lifetimes: robust on a busy host
    root, runtime, state = make_dirs()
    cfg = base_config(
        runtime,
        state,
        browser={"url": sim.url, "build": args.build},
        daemon={"log_level": "warning"},
        limits={"max_sessions": max(args.sessions + 1, 10)},
    )
    d = DaemonProcess(root, cfg).start()
    try:
        d.call("session.create", name="parked", start=False)
        one, lat1 = enqueue_run(d, min(args.enqueue, 2000), 1, 1)
        many, lat32 = enqueue_run(d, args.enqueue, args.clients, 4)
        print(
            f"enqueue, 1 client:   {one:7.0f} msgs/s  p50 {pct(lat1, 50):.2f} ms  p99 {pct(lat1, 99):.2f} ms"
        )
        print(
            f"enqueue, {args.clients} clients in 4 processes: {many:7.0f} msgs/s  p50 {pct(lat32, 50):.2f} ms  "
            f"p99 {pct(lat32, 99):.2f} ms  (target > 2000 msgs/s, durable)",
            flush=True,
        )
        if args.sessions <= 0 or args.minutes <= 0:
            return
        names = [f"s{i:02d}" for i in range(args.sessions)]
        took = link_all(d, sim, names, phones)
        print(f"linked {args.sessions} sessions ({args.build}) in {took:.0f} s", flush=True)
        ids = asyncio.run(produce(d, names, args.rate, args.minutes * 60))
        drain_deadline = time.monotonic() + 120
        while d.call("outbox.list", state="queued", limit=1) and time.monotonic() < drain_deadline:
            time.sleep(0.5)  # let the tail drain before measuring latency (bounded)
        r = delivery_report(d, ids, args.minutes * 60)
        print(
            f"delivery, {args.sessions} sessions, offered {args.rate:.0f}/min for "
            f"{args.minutes:g} min: sent {r['sent_per_min_in_window']:.0f}/min in the window, "
            f"backlog at end {r['backlog_at_end']}, total sent {r['sent']}/{r['offered']}"
        )
        print(
            f"queue-to-sent latency: p50 {r['p50_ms']:.0f} ms  p99 {r['p99_ms']:.0f} ms  "
            f"max {r['max_ms']:.0f} ms  (target: 1000/min sustained)"
        )
    finally:
        d.stop(timeout=180)
        sim.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
