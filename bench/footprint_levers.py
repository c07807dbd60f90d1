"""Candidate memory levers for the headless shell, per session at the QR, side by side.

Each variant launches `--sessions` browsers as the daemon launches them (`services.build_request`:
the daemon's flags, launcher and DevTools pipe; the variant's switches go last, as a session's
`extra_args` do, and its environment is added to the browsers'), opens the simulator's page
(64 MiB of page heap) in each until its QR shows, settles 3 s and measures every tree
(smaps_rollup per process, bench/footprint_tree.py): dirty PSS, USS and PSS per session, PSS
split by kind of process. Judge on dirty PSS (`Pss_Dirty`: heaps, stacks, written shared
memory), as bench/flags.py does: other Chromiums on the host share clean file pages and move
PSS by tens of MiB from one minute to the next (and USS with it, less), dirty PSS not.
A reclaim variant then sends what the daemon's reclaim sends, without the page's
`memorypressure` event (critical memory pressure to the browser, a forced GC of the page), and
measures again after each delay. Last, the page's fingerprint (bench/flags.py's check: user
agent, WebGL and its renderer, screen, cores, memory, WebAssembly...) is compared with the
baseline's: "same" or the keys that differ.

No daemon runs here, so the daemon's own share is not in these figures (bench/footprint.py
measures it). Variants alternate within each round, so the host's drift hits all alike.

    python bench/footprint_levers.py [--sessions 3] [--rounds 1] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import exit_on_sigterm
from bench.flags import FINGERPRINT_JS, page_diff
from bench.footprint_tree import Mem, TreeMem, measure
from bench.sessions_bare import READY_JS
from wasupd.config import BrowserBuild, parse_config
from wasupd.services import build_request
from wasupd.sim import SimServer
from wasupd.supervision import launcher
from wasupd.supervision.process import ChromiumHandle, ChromiumLauncher
from wasupd.supervision.reaper import become_subreaper, reap_orphans
from wasupd.supervision.seams import SessionOptions

MIB = 1 << 20
SETTLE = 3.0
BUILD: BrowserBuild = "headless-shell"


def disabled(*more: str) -> str:
    """The daemon's own `--disable-features` for the headless shell, plus `more` (a session's
    switch replaces the daemon's whole list, so the list is repeated)."""
    own = [*launcher.BASE_DISABLED_FEATURES, *launcher.LEAN_DISABLED_FEATURES[BUILD]]
    return "--disable-features=" + ",".join([*own, *more])


def enabled(*more: str) -> str:
    """The daemon's own `--enable-features` for the headless shell, plus `more`."""
    return "--enable-features=" + ",".join([*launcher.LEAN_ENABLED_FEATURES[BUILD], *more])


@dataclass(frozen=True)
class Lever:
    """One candidate: switches, environment, or a reclaim once the page is at rest."""

    name: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    reclaim: tuple[str, ...] = ()  # "pressure", "gc", in that order
    after: tuple[float, ...] = (2.0, 30.0, 60.0)  # s after the reclaim, when it is measured


LEVERS = [
    Lever("baseline"),
    # Chromium's malloc is PartitionAlloc (its allocator shim exports malloc): glibc's knobs
    # reach only what bypasses it.
    Lever("MALLOC_ARENA_MAX=1", env={"MALLOC_ARENA_MAX": "1"}),
    Lever(
        "glibc trim (arenas 2, trim 128 KiB, no top pad)",
        env={"MALLOC_ARENA_MAX": "2", "MALLOC_TRIM_THRESHOLD_": "131072", "MALLOC_TOP_PAD_": "0"},
    ),
    Lever("settle reclaim: pressure + GC", reclaim=("pressure", "gc")),
    Lever("settle reclaim: pressure only", reclaim=("pressure",)),
    Lever("settle reclaim: GC only", reclaim=("gc",)),
    Lever("--enable-low-end-device-mode", ("--enable-low-end-device-mode",)),
    Lever("--num-raster-threads=1", ("--num-raster-threads=1",)),
    Lever("--use-angle=swiftshader", ("--use-angle=swiftshader",)),
    Lever("--disable-gpu-compositing", ("--disable-gpu-compositing",)),
    Lever("no Vulkan feature", (disabled("Vulkan"),)),
    Lever("no threaded animation/scrolling", ("--disable-threaded-animation",)),
    Lever("no back-forward cache", (disabled("BackForwardCache"),)),
    Lever("V8 --single-threaded-gc", ("--js-flags=--single-threaded-gc",)),
    Lever("V8 --no-opt", ("--js-flags=--no-opt",)),
    Lever("PartitionAllocShortMemoryReclaim", (enabled("PartitionAllocShortMemoryReclaim"),)),
    Lever("small PA thread cache", (disabled("PartitionAllocLargeThreadCacheSize"),)),
    Lever("--no-unsandboxed-zygote", ("--no-unsandboxed-zygote",)),
]


@dataclass
class Result:
    """One variant's measurements in one round."""

    at_qr: TreeMem
    later: list[tuple[float, TreeMem]] = field(default_factory=list)
    page: dict[str, Any] = field(default_factory=dict)


def total(trees: list[TreeMem]) -> TreeMem:
    """The sum of several trees, by kind."""
    out = TreeMem()
    for tree in trees:
        out.total.add(tree.total)
        for kind, mem in tree.kinds.items():
            out.kinds.setdefault(kind, Mem()).add(mem)
    return out


async def measure_all(handles: list[ChromiumHandle], root: Path) -> TreeMem:
    """Every tree, summed (kernel figures only: nothing here asks Chromium)."""
    trees = await asyncio.to_thread(
        lambda: [measure(h.pid, root / f"s{i}", driver=False) for i, h in enumerate(handles)]
    )
    return total(trees)


async def run(lever: Lever, n: int, url: str, root: Path) -> Result:
    """Launch `n` browsers with `lever`, bring each page to its QR, settle, measure (then the
    reclaim and the later measurements), read the fingerprint of one page, stop them all."""
    config = parse_config({"browser": {"url": url, "extra_args": list(lever.args)}})
    handles: list[ChromiumHandle] = []
    try:
        for i in range(n):
            req = build_request(config, f"s{i}", root / f"s{i}" / "p", SessionOptions(build=BUILD))
            req = dataclasses.replace(req, env=lever.env)
            handles.append(await ChromiumLauncher(root / f"s{i}" / "logs").launch(req))
            await handles[-1].page.goto(url)
        for h in handles:
            await h.page.waitForFunction(READY_JS, timeout=60000)
        await asyncio.sleep(SETTLE)
        result = Result(await measure_all(handles, root))
        if lever.reclaim:
            for h in handles:
                if "pressure" in lever.reclaim:
                    level = {"level": "critical"}
                    await h.browser._connection.send("Memory.simulatePressureNotification", level)
                if "gc" in lever.reclaim:
                    await h.page._client.send("HeapProfiler.collectGarbage")
            t0 = time.monotonic()
            for wait in lever.after:
                await asyncio.sleep(max(0.0, t0 + wait - time.monotonic()))
                result.later.append((wait, await measure_all(handles, root)))
        result.page = await handles[0].page.evaluate(FINGERPRINT_JS)
        return result
    finally:
        for h in handles:
            await h.stop(10)
        reap_orphans()


def cell(tree: TreeMem, n: int, base: TreeMem | None) -> str:
    """Dirty PSS / USS / PSS per session, each with its difference to `base` when given."""
    out = []
    for attr in ("pss_dirty", "uss", "pss"):
        value = getattr(tree.total, attr) / MIB / n
        diff = "" if base is None else f" ({value - getattr(base.total, attr) / MIB / n:+.1f})"
        out.append(f"{value:.1f}{diff}")
    return " / ".join(out)


def kinds(tree: TreeMem, n: int) -> str:
    """PSS per session by kind of process."""
    return ", ".join(f"{k} {m.pss / MIB / n:.1f}" for k, m in sorted(tree.kinds.items()))


async def main(args: argparse.Namespace) -> None:
    only = [s.strip() for s in args.only.split(",")] if args.only else []
    levers = [
        v for v in LEVERS if v.name == "baseline" or any(s in v.name for s in only) or not only
    ]
    become_subreaper()
    results: dict[str, list[Result]] = {v.name: [] for v in levers}
    async with SimServer(time_factor=1.0) as sim:
        for r in range(args.rounds):
            for lever in levers[r % len(levers) :] + levers[: r % len(levers)]:
                root = Path(tempfile.mkdtemp(prefix="wasupd-levers-"))
                try:
                    results[lever.name].append(await run(lever, args.sessions, sim.url, root))
                finally:
                    shutil.rmtree(root, ignore_errors=True)
                print(f"  round {r + 1}: {lever.name} done", file=sys.stderr)
    n = args.sessions
    print(f"\nper session at the QR, {n} browsers of the headless shell, MiB: dirty / USS / PSS")
    print(
        "(differences to the same round's baseline; after a reclaim, to its own figure at the QR)"
    )
    print("| variant | round | at the QR | later | page | by kind (PSS) |")
    print("|---|---|---|---|---|---|")
    for name, rounds in results.items():
        for r, res in enumerate(rounds):
            base = results["baseline"][r]
            later = "; ".join(f"+{w:g} s: {cell(t, n, res.at_qr)}" for w, t in res.later)
            at_qr = cell(res.at_qr, n, None if name == "baseline" else base.at_qr)
            diff = page_diff(res.page, base.page)
            print(f"| {name} | {r + 1} | {at_qr} | {later} | {diff} | {kinds(res.at_qr, n)} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sessions", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--only", default="", help="comma-separated substrings of variant names")
    exit_on_sigterm()
    asyncio.run(main(p.parse_args()))
