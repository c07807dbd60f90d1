"""Takeover time in a fleet: `kill -9` of the host running a session until the session is
connected on the other host, against a plain `session restart` on one host, side by side.

Two daemons (own runtime and state dirs) on one local PostgreSQL, one key and one shared
profiles directory, real Chromium against the simulator (time factor 1). One session is
linked once; then each run alternates the two measures: a restart of the session where it
runs (stop, seal, unseal, start: the baseline), and a takeover (SIGKILL of its host, the
lease expiring by the database clock, a claim by the other host, unseal and start there;
the killed host is started again afterwards, as systemd would). The difference of the
medians is what the lease costs; it should be about `lease_timeout` less the renewal the
dead host made just before.

Then enqueue throughput, `message.send` over the socket as a user's program calls it
(`--clients` connections in two client processes, to a session that is not started, so only
the accepting path is measured: parse, check, durable commit), on a fleet host (PostgreSQL) and
on a single host (SQLite) started side by side, the two alternating within each run.
bench/store.py measures the same two backends below the RPC, by transaction shape.

    python bench/fleet.py [--runs 5] [--lease 10] [--enqueue 4000] [--clients 16]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from bench.common import exit_on_sigterm
from bench.outbox import enqueue_run
from tests.helpers.daemon import DaemonProcess, base_config, make_dirs
from tests.helpers.postgres import start_server, stop_server
from tests.helpers.sim import SimProcess
from tests.helpers.waiting import eventually

PHONE = "15550001111"
START = 120.0  # seconds a takeover or a restart may take before the run is called broken


def where(d: DaemonProcess) -> tuple[str, str]:
    s = d.call("session.get", name="s", history=0)
    return str(s.get("host") or ""), str(s["state"])


def fleet_host(name: str, url: str, sim: SimProcess, shared: Path, lease: float) -> DaemonProcess:
    root, runtime, state = make_dirs()
    config = base_config(
        runtime,
        state,
        browser={"url": sim.url},
        daemon={"host_id": name},
        store={"url": url},
        fleet={"lease_timeout": lease, "profiles_dir": str(shared / "profiles")},
        profiles={"key_file": str(shared / "profile.key")},
    )
    return DaemonProcess(root, config).start()


def link(d: DaemonProcess, sim: SimProcess, work: Path) -> None:
    d.call("session.create", name="s", start=True)
    eventually(lambda: where(d)[1], 60, "a QR", ok=lambda s: s == "qr")
    qr: dict[str, Any] = d.call("session.qr", name="s", wait=30)
    sim.call("scan", payload=qr["payload"], phone=PHONE)
    eventually(lambda: where(d)[1], 60, "connected", ok=lambda s: s == "connected")
    archive = work / "shared" / "profiles" / "s.wasup"
    eventually(archive.exists, 120, "the first checkpoint sealed")


def restart(owner: DaemonProcess) -> float:
    t0 = time.monotonic()
    owner.call("session.restart", name="s", timeout=START)
    eventually(lambda: where(owner), START, "connected again", ok=lambda w: w[1] == "connected")
    return time.monotonic() - t0


def takeover(hosts: dict[str, DaemonProcess]) -> tuple[float, str]:
    """Kill the owner; seconds until connected on the other host, and that host's name."""
    owner = next(h for h, d in hosts.items() if where(d)[0] == h)
    other = next(h for h in hosts if h != owner)
    t0 = time.monotonic()
    hosts[owner].kill9()
    eventually(
        lambda: where(hosts[other]),
        START,
        "connected elsewhere",
        ok=lambda w: w == (other, "connected"),
    )
    took = time.monotonic() - t0
    hosts[owner].start()  # back in the fleet, as systemd would restart it
    return took, other


def single_host() -> DaemonProcess:
    """A daemon on its own SQLite store: the baseline of the enqueue measure."""
    root, runtime, state = make_dirs()
    return DaemonProcess(root, base_config(runtime, state)).start()


def enqueue_side_by_side(
    fleet: DaemonProcess, single: DaemonProcess, runs: int, total: int, clients: int
) -> tuple[float, float]:
    """Medians of `runs` interleaved enqueue runs (messages/s): (PostgreSQL, SQLite)."""
    rates: dict[str, list[float]] = {"pg": [], "sqlite": []}
    daemons = {"pg": fleet, "sqlite": single}
    for d in daemons.values():
        d.call("session.create", name="parked", start=False)
    for run in range(runs):
        for kind in ("pg", "sqlite") if run % 2 == 0 else ("sqlite", "pg"):
            rate, _ = enqueue_run(daemons[kind], total, clients, 2)
            rates[kind].append(rate)
        print(
            f"enqueue run {run + 1}: PostgreSQL {rates['pg'][-1]:.0f} msgs/s,"
            f" SQLite {rates['sqlite'][-1]:.0f} msgs/s",
            flush=True,
        )
    return statistics.median(rates["pg"]), statistics.median(rates["sqlite"])


def main() -> int:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lease", type=float, default=10.0, help="fleet.lease_timeout (s)")
    ap.add_argument("--enqueue", type=int, default=4000, help="messages per enqueue run")
    ap.add_argument("--clients", type=int, default=16, help="concurrent connections (enqueue)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wasupd-bench-fleet-"))
    (work / "shared" / "profiles").mkdir(parents=True, mode=0o700)
    server = start_server()
    hosts: dict[str, DaemonProcess] = {}
    sim = SimProcess(1.0, [PHONE])
    try:
        with server.fresh_db() as db:
            try:
                url = server.url(db)
                hosts["a"] = fleet_host("a", url, sim, work / "shared", args.lease)
                link(hosts["a"], sim, work)
                hosts["b"] = fleet_host("b", url, sim, work / "shared", args.lease)
                eventually(
                    lambda: len(hosts["b"].call("host.list")), 30, "two hosts", ok=lambda n: n == 2
                )
                restarts, takeovers = [], []
                for run in range(args.runs):
                    owner = next(d for h, d in hosts.items() if where(d)[0] == h)
                    restarts.append(restart(owner))
                    took, now_on = takeover(hosts)
                    takeovers.append(took)
                    print(
                        f"run {run + 1}: restart {restarts[-1]:.1f} s, takeover {took:.1f} s (to {now_on})",
                        flush=True,
                    )
                conflicts = sim.call("conflicts", phone=PHONE)
                devices = sim.call("devices", phone=PHONE)
                hosts["single"] = single_host()
                pg, lite = enqueue_side_by_side(
                    hosts["a"], hosts["single"], args.runs, args.enqueue, args.clients
                )
            finally:
                for d in hosts.values():  # while their database still exists
                    if d.proc is not None and d.proc.poll() is None:
                        d.stop()
        r, t = statistics.median(restarts), statistics.median(takeovers)
        print(f"\nsession moved by kill -9, lease_timeout {args.lease:g} s, medians of {args.runs}")
        print(f"{'restart on one host':<24} {r:>7.1f} s")
        print(
            f"{'takeover after kill -9':<24} {t:>7.1f} s   ({t / r:.2f}x the restart, +{t - r:.1f} s)"
        )
        print(f"conflicts seen by the simulator: {len(conflicts)}; linked devices: {len(devices)}")
        print(
            f"\nenqueue (message.send, {args.clients} connections), medians of {args.runs}:"
            f" PostgreSQL fleet host {pg:.0f} msgs/s, SQLite single host {lite:.0f} msgs/s"
            f" ({pg / lite:.2f}x)"
        )
        return 0 if not conflicts and len(devices) == 1 else 1
    finally:
        for d in hosts.values():
            if d.proc is not None and d.proc.poll() is None:
                d.stop()
            shutil.rmtree(d.root, ignore_errors=True)
        sim.stop()
        stop_server(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
