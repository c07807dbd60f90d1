"""The capacity run of `bench/sessions.py`: N linked sessions of one build on one host, with
traffic in and out, held for a while; what the host and the daemon pay for them.

A fresh daemon per build, so its CPU and RSS are the capacity run's alone. The sessions are
created in waves sized by memory: a wave is only as large as MemAvailable allows above the
reserve at the per-session cost seen so far (a prior before the first wave), so a build that
does not fit stops at "fits N of 100" instead of driving the host into the OOM killer. While
sessions link or hold, MemAvailable under half the reserve ends the run at once.

The hold: every session sends `rate` messages a minute through the daemon's RPC and receives as
many, injected by the simulator from one peer, on a steady schedule. Sampled: PSS of every
tree, MemAvailable, the daemon's RSS and fds and its own event-loop lag (`daemon.status`,
`loop_lag`: the worst wake-up delay of the last minute), every `every` s; an RPC round trip
(`daemon.health`, the daemon's event loop seen from outside) every second. The round trip is
not `daemon.status`: that describes every session, and with 35 sessions a status a second
took about a tenth of the daemon's CPU samples (py-spy), work the bench caused rather than the
sessions. At the end: daemon CPU over the hold, restarts, states, and messages delivered /
received against those offered.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.outbox import PEER, pct
from tests.helpers.daemon import DaemonProcess, base_config, make_dirs
from tests.helpers.sim import SimProcess
from wasupd.config import BrowserBuild
from wasupd.rpc.client import AsyncClient
from wasupd.watchdogs.resources import measure_tree

MIB = 1 << 20
GIB = 1 << 30
# What one session is assumed to cost before any is measured (linked, with headroom).
PRIOR_MIB: dict[str, int] = {"full": 320, "headless-shell": 200}
MARGIN = 1.25  # a starting browser peaks above its resting PSS


class MemoryFloor(RuntimeError):
    """MemAvailable fell under half the reserve: the run stops before the host does."""


def available() -> int:
    """MemAvailable in bytes."""
    return int(psutil.virtual_memory().available)


def reserve_bytes(reserve_mib: int, reserve_share: float) -> int:
    """The memory left to the host: the larger of a fixed size and a share of RAM."""
    return max(reserve_mib * MIB, int(psutil.virtual_memory().total * reserve_share))


@dataclass
class Run:
    """What one capacity run saw."""

    build: str
    wanted: int
    reserve: int
    names: list[str] = field(default_factory=list)
    phones: dict[str, str] = field(default_factory=dict)
    qr_at: dict[str, float] = field(default_factory=dict)  # first QR, s after the first create
    linked_s: float = 0.0
    waves: list[int] = field(default_factory=list)
    stopped_for_memory: str = ""
    samples: list[dict[str, float]] = field(default_factory=list)
    rtt_ms: list[float] = field(default_factory=list)
    rtt_worst: tuple[float, float] = (0.0, 0.0)  # (ms, s into the hold)
    lag_ms: list[float] = field(default_factory=list)  # the daemon's worst loop lag per sample
    injected: int = 0  # inbound messages the simulator took
    cut_short: str = ""  # why the hold ended early (the memory floor), if it did
    held_s: float = 0.0


def guard(run: Run) -> None:
    """MemoryFloor when MemAvailable is under half the reserve."""
    if (avail := available()) < run.reserve // 2:
        raise MemoryFloor(
            f"MemAvailable {avail / GIB:.2f} GiB under half the reserve"
            f" ({run.reserve / GIB:.2f} GiB); stopping the run"
        )


def scan(d: DaemonProcess, sim: SimProcess, name: str, phone: str, t0: float, run: Run) -> None:
    """Wait for `name`'s QR (checking memory meanwhile) and scan it with `phone`."""
    for attempt in range(8):  # a QR may rotate between reading and scanning it
        guard(run)
        try:
            qr = d.call("session.qr", name=name, wait=20, timeout=40)
        except Exception as exc:
            if attempt == 7:
                raise RuntimeError(f"{name}: no QR: {exc}") from exc
            continue
        run.qr_at.setdefault(name, time.perf_counter() - t0)
        try:
            sim.call("scan", payload=qr["payload"], phone=phone)
            return
        except RuntimeError:
            if attempt == 7:
                raise


def wave_size(run: Run, per_session: float) -> int:
    """How many more sessions fit above the reserve at `per_session` bytes each."""
    room = available() - run.reserve
    left = run.wanted - len(run.names)
    return max(0, min(left, int(room / (per_session * MARGIN))))


def link_waves(
    d: DaemonProcess, sim: SimProcess, run: Run, all_names: list[str], all_phones: list[str]
) -> None:
    """Create and link sessions in memory-sized waves until all `wanted` run or no more fit."""
    per_session = PRIOR_MIB[run.build] * MIB
    t0 = time.perf_counter()
    while len(run.names) < run.wanted:
        k = wave_size(run, per_session)
        if k == 0:
            run.stopped_for_memory = (
                f"MemAvailable {available() / GIB:.2f} GiB leaves no room above the reserve"
                f" ({run.reserve / GIB:.2f} GiB) for one more at"
                f" {per_session * MARGIN / MIB:.0f} MiB"
            )
            break
        start = len(run.names)
        wave = list(zip(all_names[start : start + k], all_phones[start : start + k], strict=True))
        before = available()
        for name, phone in wave:
            d.call("session.create", name=name, options={"build": run.build})
            run.names.append(name)
            run.phones[name] = phone
        for name, phone in wave:
            scan(d, sim, name, phone, t0, run)
        wait_connected(d, run)
        run.waves.append(k)
        pss = total_pss(d, run.names)
        dropped = (before - available()) / k
        per_session = max(pss / len(run.names), dropped)
    run.linked_s = time.perf_counter() - t0


def wait_connected(d: DaemonProcess, run: Run, timeout: float = 600) -> None:
    """Until every session of the run is connected (bounded; memory checked meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        guard(run)
        states = {s["name"]: s["state"] for s in d.call("session.list")}
        if all(states.get(n) == "connected" for n in run.names):
            return
        if time.monotonic() > deadline:
            late = sorted(n for n in run.names if states.get(n) != "connected")
            raise TimeoutError(f"{len(late)} sessions not connected in {timeout} s: {late[:5]}")
        time.sleep(1)  # polling another process, bounded by the deadline


def total_pss(d: DaemonProcess, names: list[str]) -> int:
    """PSS of every running tree of `names`, measured together."""
    pids = [s["pid"] for s in d.call("session.list") if s["name"] in names and s["pid"]]
    return sum(measure_tree(pid).pss_bytes for pid in pids)


async def traffic(
    d: DaemonProcess, sim: SimProcess, run: Run, rate: float, seconds: float, tag: str
) -> list[str]:
    """`rate` messages a minute out of and into each session for `seconds`, spread evenly
    over the sessions and the minute; the ids of the sends. Sends are not awaited in line,
    so a slow reply does not lower the offered load."""
    n = len(run.names)
    interval = 60.0 / (rate * n)
    sends: list[asyncio.Task[Any]] = []
    injects: list[asyncio.Task[Any]] = []
    async with AsyncClient(d.socket, timeout=120) as c:
        start, i = time.monotonic(), 0
        while (now := time.monotonic()) - start < seconds and not run.cut_short:
            if (due := start + i * interval) > now:
                # The offered load's schedule, never past the end of the hold.
                await asyncio.sleep(min(due, start + seconds) - now)
                continue
            name = run.names[i % n]
            text = f"{tag} {i}"
            sends.append(
                asyncio.ensure_future(
                    c.call("message.send", to=PEER, text=f"out {text}", session=name)
                )
            )
            injects.append(asyncio.ensure_future(inject(sim, run.phones[name], f"in {text}")))
            i += 1
        try:
            msgs = await asyncio.gather(*sends)
        finally:
            run.injected = sum(await asyncio.gather(*injects))
    return [m["id"] for m in msgs]


async def inject(sim: SimProcess, phone: str, text: str) -> bool:
    """One inbound message from the peer; False when the simulator did not take it (a
    starved host can time its control call out): it is then not counted as sent to us."""
    try:
        await asyncio.to_thread(sim.call, "inject", to=phone, text=text, **{"from": PEER})
    except (OSError, RuntimeError):  # urllib's timeout is an OSError
        return False
    return True


async def sampler(d: DaemonProcess, run: Run, every: float, stop: asyncio.Event) -> None:
    """Every `every` s: PSS of all trees, MemAvailable, daemon RSS and fds, the daemon's
    event-loop lag; `daemon.health` round trips every second in between. MemoryFloor ends
    the hold."""
    daemon = psutil.Process(d.proc.pid)  # type: ignore[union-attr]
    async with AsyncClient(d.socket, timeout=60) as c:
        start = next_sample = time.monotonic()
        while not stop.is_set():
            t = time.perf_counter()
            await c.call("daemon.health")
            run.rtt_ms.append(ms := (time.perf_counter() - t) * 1000)
            if ms > run.rtt_worst[0]:
                run.rtt_worst = (ms, time.monotonic() - start)
            if time.monotonic() >= next_sample:
                try:
                    guard(run)
                except MemoryFloor as exc:  # end the hold; what was measured so far is reported
                    run.cut_short = f"{exc} after {time.monotonic() - start:.0f} s of the hold"
                    return
                status = await c.call("daemon.status")
                run.lag_ms.append(float(status["loop_lag"]["max_ms"]))
                pss = await asyncio.to_thread(total_pss, d, run.names)
                run.samples.append(
                    {
                        "pss": pss,
                        "avail": available(),
                        "rss": daemon.memory_info().rss,
                        "fds": daemon.num_fds(),
                    }
                )
                next_sample += every
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def hold(
    d: DaemonProcess, sim: SimProcess, run: Run, rate: float, seconds: float
) -> tuple[list[str], float]:
    """Traffic for `seconds` while sampling; the send ids and the daemon's CPU % of one core."""
    daemon = psutil.Process(d.proc.pid)  # type: ignore[union-attr]
    stop = asyncio.Event()
    c0, w0 = sum(daemon.cpu_times()[:2]), time.monotonic()
    sampling = asyncio.ensure_future(sampler(d, run, max(10.0, seconds / 10), stop))
    try:
        ids = await traffic(d, sim, run, rate, seconds, f"cap-{run.build}")
    finally:
        stop.set()
        await sampling
    run.held_s = time.monotonic() - w0
    cpu = (sum(daemon.cpu_times()[:2]) - c0) / run.held_s * 100
    return ids, cpu


def accounting(d: DaemonProcess, sim: SimProcess, run: Run, ids: list[str]) -> dict[str, int]:
    """Sent / received against offered, after a bounded drain (queued sends, pending inbound)."""
    tag = f"cap-{run.build}"
    deadline = time.monotonic() + 120
    while True:
        rows = {m["id"]: m for m in d.call("outbox.list", state=None, limit=10000, timeout=120)}
        sent = sum(1 for i in ids if rows.get(i, {}).get("state") in ("sent", "delivered", "read"))
        at_peer = sum(1 for m in sim.call("received", phone=PEER) if tag in m.get("body", ""))
        inbox = d.call("inbox.list", limit=10000, timeout=120)
        got = sum(1 for m in inbox if m["body"].startswith(f"in {tag}"))
        done = sent == at_peer == len(ids) and got == run.injected
        if done or time.monotonic() > deadline:
            return {"offered": len(ids), "sent": sent, "at_peer": at_peer, "received": got}
        time.sleep(2)  # polling the daemon and the simulator, bounded by the deadline


def stray_processes(root: Path) -> int:
    """Processes whose command line names the run's temp root (browsers left behind)."""
    n = 0
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(root) in a for a in proc.info["cmdline"] or ()):
            n += 1
    return n


def tree_limits(d: DaemonProcess, run: Run) -> dict[str, int]:
    """The most fds one browser process holds, all threads and processes of the trees, and the
    inotify instances they use (each counts against the user's fs.inotify.max_user_instances)."""
    pids = [s["pid"] for s in d.call("session.list") if s["name"] in run.names and s["pid"]]
    most, threads, procs, inotify = 0, 0, 0, 0
    for pid in pids:
        with_children = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for p in with_children:
            try:
                fds = list(Path(f"/proc/{p.pid}/fd").iterdir())
                most = max(most, len(fds))
                inotify += sum(1 for f in fds if _readlink(f) == "anon_inode:inotify")
                threads += p.num_threads()
                procs += 1
            except (psutil.Error, OSError):
                continue
    return {"max_fds": most, "threads": threads, "processes": procs, "inotify": inotify}


def _readlink(p: Path) -> str:
    try:
        return str(p.readlink())
    except OSError:
        return ""


def capacity(
    sim: SimProcess,
    build: BrowserBuild,
    phones: list[str],
    hold_s: float,
    *,
    rate: float,
    reserve_mib: int,
    reserve_share: float,
) -> None:
    """One capacity run of `len(phones)` sessions of `build` on a daemon of its own."""
    run = Run(build, len(phones), reserve_bytes(reserve_mib, reserve_share))
    all_names = [f"c{build[:1]}{i:03d}" for i in range(len(phones))]
    root, runtime, state = make_dirs()
    d = DaemonProcess(
        root,
        base_config(
            runtime,
            state,
            browser={"url": sim.url},
            daemon={"log_level": "warning", "start_stagger": 0.05},
            limits={"max_sessions": 200, "host_memory_reserve_mib": run.reserve // MIB // 2},
        ),
    ).start()
    stop_s, error = 0.0, ""
    try:
        link_waves(d, sim, run, all_names, phones)
        before = {s["name"]: s["restarts"] for s in d.call("session.list")}
        ids, cpu = asyncio.run(hold(d, sim, run, rate, hold_s))
        tally = accounting(d, sim, run, ids)
        sessions = [s for s in d.call("session.list") if s["name"] in run.names]
        limits = tree_limits(d, run)
        report(run, hold_s, rate, cpu, tally, sessions, before, limits)
    except MemoryFloor as exc:
        error = str(exc)
    finally:
        t = time.perf_counter()
        d.stop(timeout=180)
        stop_s = time.perf_counter() - t
        left = stray_processes(root)
        shutil.rmtree(root, ignore_errors=True)
    if error:
        print(f"  stopped: {error}")
    print(
        f"  daemon stop with {len(run.names)} running: {stop_s:.1f} s; processes left: {left}",
        flush=True,
    )


def report(
    run: Run,
    hold_s: float,
    rate: float,
    cpu: float,
    tally: dict[str, int],
    sessions: list[dict[str, Any]],
    before: dict[str, int],
    limits: dict[str, int],
) -> None:
    """Print the run's figures."""
    n = len(run.names)
    s = run.samples
    pss = statistics.median(x["pss"] for x in s) if s else 0.0
    per = pss / n if n else 0.0
    restarts = sum(x["restarts"] - before[x["name"]] for x in sessions)
    connected = sum(x["state"] == "connected" for x in sessions)
    print(f"\n[{run.build}] capacity: {n} of {run.wanted} linked sessions, waves {run.waves}")
    if n < run.wanted:
        print(
            f"  fits {n} of {run.wanted}: {run.stopped_for_memory};"
            f" projected total for {run.wanted}: {per * run.wanted / GIB:.1f} GiB PSS"
        )
    print(
        f"  the last of {n} QRs at {max(run.qr_at.values()):.1f} s, all {n} connected"
        f" {run.linked_s:.1f} s after the first create"
    )
    if run.cut_short:
        print(f"  HOLD CUT SHORT: {run.cut_short}")
    print(
        f"  hold {run.held_s:.0f} s of {hold_s:.0f}, traffic {rate:g}/min in and {rate:g}/min"
        f" out per session; {len(s)} samples, medians:"
    )
    print(
        f"  total PSS {pss / GIB:.2f} GiB ({per / MIB:.0f} MiB per session);"
        f" MemAvailable {statistics.median(x['avail'] for x in s) / GIB:.2f} GiB"
        f" (min {min(x['avail'] for x in s) / GIB:.2f}, reserve {run.reserve / GIB:.2f})"
    )
    print(
        f"  daemon CPU {cpu:.2f}% of one core; daemon RSS"
        f" {statistics.median(x['rss'] for x in s) / MIB:.0f} MiB, fds"
        f" {max(x['fds'] for x in s):.0f} max"
    )
    print(
        f"  RPC round trip (daemon.health, 1/s): p50 {pct(run.rtt_ms, 50):.1f} ms,"
        f" p99 {pct(run.rtt_ms, 99):.1f} ms, max {run.rtt_worst[0]:.0f} ms"
        f" ({run.rtt_worst[1]:.0f} s into the hold); the daemon's event-loop lag, worst"
        f" per minute: median {statistics.median(run.lag_ms or [0]):.0f} ms,"
        f" max {max(run.lag_ms or [0]):.0f} ms"
    )
    print(f"  restarts during the hold: {restarts}; connected at the end: {connected}/{n}")
    print(
        f"  messages: {tally['offered']} offered out, {tally['sent']} sent,"
        f" {tally['at_peer']} at the peer; {run.injected} injected in,"
        f" {tally['received']} in the inbox"
    )
    print(
        f"  trees: {limits['processes']} processes, {limits['threads']} threads, the most fds"
        f" in one process {limits['max_fds']}, inotify instances {limits['inotify']}",
        flush=True,
    )
