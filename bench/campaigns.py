"""Campaign benchmark: creating a large campaign, and delivering one across many numbers.

1. Create: `wasupctl campaign create` of a `--create`-recipient CSV (default 100,000) on a
   stopped session, so nothing is sent: the wall time from the command's start to its plan
   (CSV streamed, checked, stored, planned and queued in batches), and the daemon's RSS growth
   (its RSS sampled every 50 ms during the run, peak minus the RSS before).
   Targets: under 30 s, growth under 100 MiB.
2. Delivery, pacing off: `--numbers` sessions linked to the simulator with real Chromium, a
   campaign of `--deliver` recipients (default 5,000 over 10 numbers) `--from` all of them;
   reported: messages/s from the first send to the last, the per-number counts, and the
   exactly-once check (each recipient's `received` list in the simulator holds the campaign's
   message exactly once).

    python bench/campaigns.py [--create 100000] [--deliver 5000] [--numbers 10]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import exit_on_sigterm
from bench.outbox import link_all
from tests.helpers.daemon import DaemonProcess, base_config, make_dirs
from tests.helpers.sim import SimProcess

CTL = [sys.executable, "-m", "wasupctl.app"]


def write_csv(path: Path, phones: list[str]) -> None:
    """The recipients file: `phone` and a `name` used by the text."""
    with path.open("w") as fh:
        fh.write("phone,name\n")
        fh.writelines(f"+{p},r{i}\n" for i, p in enumerate(phones))


class PeakRss:
    """Samples a process's RSS in a thread until stopped; the peak in bytes."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.proc, self.every = psutil.Process(pid), every
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):  # the sampling period, not synchronisation
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self.proc.memory_info().rss)


def ctl(d: DaemonProcess, *args: str) -> None:
    """Run `wasupctl` against the daemon; raise with its stderr on failure."""
    out = subprocess.run(
        [*CTL, "--socket", str(d.socket), *args], capture_output=True, timeout=900, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"wasupctl {' '.join(args[:3])} failed: {out.stderr.decode()}")


def create_run(d: DaemonProcess, total: int, tmp: Path) -> None:
    """Create a `total`-recipient campaign on the stopped session `parked`; print the figures."""
    csv = tmp / "create.csv"
    write_csv(csv, [f"1{2000000000 + i:010d}" for i in range(total)])
    assert d.proc is not None
    before = psutil.Process(d.proc.pid).memory_info().rss
    with PeakRss(d.proc.pid) as rss:
        t0 = time.perf_counter()
        ctl(d, "campaign", "create", "big", "--recipients", str(csv), "--text", "Hi {name}",
            "--from", "parked")  # fmt: skip
        took = time.perf_counter() - t0
    queued = d.call("campaign.get", name="big")["totals"].get("queued", 0)
    growth = (rss.peak - before) / 2**20
    print(
        f"create, {total} recipients: {took:.1f} s ({total / took:.0f} rows/s), {queued} queued;"
        f" daemon RSS {before / 2**20:.0f} MiB before, peak growth {growth:.1f} MiB"
        f"  (targets: < 30 s, < 100 MiB)",
        flush=True,
    )


def deliver_run(d: DaemonProcess, sim: SimProcess, phones: list[str], names: list[str]) -> None:
    """Deliver one campaign to `phones` from `names` (pacing off); print throughput and the
    exactly-once check."""
    csv = Path(d.root) / "deliver.csv"
    write_csv(csv, phones)
    t0 = time.time()
    ctl(d, "campaign", "create", "deliver", "--recipients", str(csv), "--text",
        "bench {name}", "--from", ",".join(names))  # fmt: skip
    deadline = time.monotonic() + 3600
    while d.call("campaign.get", name="deliver")["state"] != "finished":
        if time.monotonic() > deadline:
            raise TimeoutError("the delivery campaign did not finish within an hour")
        time.sleep(1)  # polling another process, bounded by the deadline
    rows = d.call("campaign.report", name="deliver", limit=10000, timeout=120)
    sent = sorted(r["sent_at"] for r in rows if r["sent_at"])
    span = sent[-1] - sent[0] if len(sent) > 1 else 0.0
    per_number = Counter(r["session"] for r in rows)
    counts = Counter(
        p for p in phones for m in sim.call("received", phone=p) if m["body"].startswith("bench ")
    )
    twice = [p for p in phones if counts[p] > 1]
    missing = [p for p in phones if counts[p] == 0]
    print(
        f"delivery, {len(phones)} recipients over {len(names)} numbers, pacing off:"
        f" {len(sent)} sent in {span:.0f} s ({len(sent) / span if span else 0:.1f} msgs/s;"
        f" {sent[-1] - t0:.0f} s from create to the last send)",
        flush=True,
    )
    print(f"per number: {dict(sorted(per_number.items()))}")
    print(
        f"exactly once (simulator's received lists): {len(phones) - len(twice) - len(missing)}"
        f" once, {len(twice)} twice or more, {len(missing)} never"
        f" -> {'OK' if not twice and not missing else 'FAILED'}",
        flush=True,
    )
    if twice or missing:
        raise SystemExit(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--create", type=int, default=100_000, help="recipients of the created one")
    p.add_argument("--deliver", type=int, default=5000, help="recipients delivered (0: skip)")
    p.add_argument("--numbers", type=int, default=10, help="sessions the delivery uses")
    args = p.parse_args()

    numbers = [f"1555000{i:04d}" for i in range(args.numbers)]
    phones = [f"1555300{i:04d}" for i in range(args.deliver)]
    sim = SimProcess(0.2, [*numbers, *phones])
    root, runtime, state = make_dirs()
    cfg = base_config(
        runtime,
        state,
        browser={"url": sim.url},
        daemon={"log_level": "warning"},
        limits={"max_sessions": max(args.numbers + 1, 10)},
    )
    d = DaemonProcess(root, cfg).start()
    try:
        d.call("session.create", name="parked", start=False)
        if args.create > 0:
            create_run(d, args.create, root)
            d.call("campaign.cancel", name="big", timeout=300)  # its messages must not linger
        if args.deliver <= 0 or args.numbers <= 0:
            return
        names = [f"s{i:02d}" for i in range(args.numbers)]
        took = link_all(d, sim, names, numbers)
        print(f"linked {args.numbers} sessions in {took:.0f} s", flush=True)
        deliver_run(d, sim, phones, names)
    finally:
        d.stop(timeout=180)
        sim.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
