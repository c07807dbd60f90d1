"""Memory per session at the QR: whatsapp-web.js against wasupd's two builds, side by side.

Each round starts, one after the other, in an order that rotates from round to round:
- whatsapp-web.js (the version tests/wwebjs installs from npm, `PUPPETEER_SKIP_DOWNLOAD=1`):
  `--sessions` clients in one Node process, each as its documentation sets one up (LocalAuth,
  puppeteer's launch options with Debian's Chromium as `executablePath`, full Chromium in
  puppeteer's default headless mode), steered to the simulator as tests/wwebjs does;
- wasupd, a fresh daemon with `--sessions` sessions of the full build (the default);
- wasupd, a fresh daemon with `--sessions` sessions of the headless shell.
Each waits until all its pages show the QR of the simulator's page (64 MiB of page heap, its
default), settles, and measures its whole tree: Node or the daemon, every browser and helper
(smaps_rollup per process, bench/footprint_tree.py), then stops everything it started.

Printed: medians over the rounds of PSS, USS and dirty PSS per session, the ratio to
whatsapp-web.js, the issue's goals (default <= 0.85x, headless shell <= 0.5x, judged on PSS) met
or the distance, and the split by kind of process. PSS divides shared pages among all their
mappers, so Chromiums of other users of the host lower it; USS (private pages) does not move
with them but leaves the shared ones out; dirty PSS (`Pss_Dirty`) does not move with them
either and leaves out only the clean pages (code, resources) every session's browser shares.

`--breakdown` instead launches one session's browser of each build as the daemon does, and
prints where its PSS goes: by process and backing (smaps_rollup), by allocator inside each
process (Chromium's memory-infra dump over DevTools), the page's V8 heap by space
(bench/footprint_heap.py). docs/chromium.md holds its table.

`--disable-features F1,F2` adds a variant: the full build with those features disabled on top of
the daemon's own (through the sessions' `extra_args`), to measure a candidate side by side.

    python bench/footprint.py [--runs 3] [--sessions 5] [--timeout 180] [--breakdown]
                              [--disable-features F1,F2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import exit_on_sigterm
from bench.footprint_tree import Mem, TreeMem, kind_order, naming
from bench.footprint_wasupd import STOPPING, wasupd_round
from bench.footprint_wwebjs import WwebjsSetup, wwebjs_round
from tests.wwebjs.harness import WWEBJS_VERSION
from wasupd.config import BrowserBuild
from wasupd.supervision import launcher
from wasupd.supervision.reaper import become_subreaper

MIB = 1 << 20
VARIANTS: dict[str, str] = {
    "wwebjs": f"whatsapp-web.js {WWEBJS_VERSION}, full Chromium",
    "full": "wasupd, full build (default)",
    "headless-shell": "wasupd, headless shell",
}
CANDIDATE = "full+"  # the full build with --disable-features added (`--disable-features`)
GOALS = {"full": 0.85, "headless-shell": 0.5, CANDIDATE: 0.85}


@dataclass
class Samples:
    """One variant's rounds."""

    trees: list[TreeMem] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)  # the round of each tree
    ready: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def ratio(s: Samples, base: Samples, attr: str) -> float:
    """The median over rounds of this round's ratio to the baseline's (the variants of one
    round run a minute apart, under the same load from the rest of the host, so a round's
    ratio is steadier than a ratio of medians); NaN with no round in common."""
    mine = dict(zip(s.rounds, s.trees, strict=True))
    theirs = dict(zip(base.rounds, base.trees, strict=True))
    pairs = [
        getattr(mine[r].total, attr) / getattr(theirs[r].total, attr) for r in mine if r in theirs
    ]
    return statistics.median(pairs) if pairs else float("nan")


def variants(features: str) -> dict[str, str]:
    """key -> label of every variant of this run."""
    if not features:
        return dict(VARIANTS)
    return {**VARIANTS, CANDIDATE: f"wasupd, full build + {features}"}


def merged_features(features: str) -> tuple[str, ...]:
    """A session's extra_args adding `features` to the daemon's own --disable-features (the
    last --disable-features on a command line wins, so the daemon's list is repeated)."""
    own = [a.split("=", 1)[1] for a in launcher.BASE_FLAGS if a.startswith("--disable-features=")]
    return ("--disable-features=" + ",".join([*own, features]),)


async def one_round(
    key: str, setup: WwebjsSetup, plain_url: str, root: Path, args: argparse.Namespace
) -> tuple[TreeMem, float]:
    """One variant's sample: its tree at the QR and the seconds until all showed it."""
    n, timeout = args.sessions, args.timeout
    if key == "wwebjs":
        return await wwebjs_round(setup, n, root, timeout)
    build: BrowserBuild = "headless-shell" if key == "headless-shell" else "full"
    extra = merged_features(args.disable_features) if key == CANDIDATE else ()
    try:
        return await asyncio.to_thread(wasupd_round, plain_url, build, n, root, timeout, extra)
    except asyncio.CancelledError:
        STOPPING.set()  # the thread notices, stops its daemon and returns
        raise


def per_session(values: list[int], n: int) -> float:
    """Median MiB per session."""
    return statistics.median(values) / n / MIB if values else float("nan")


def goal_text(key: str, ratio: float, base_mib: float) -> str:
    """'goal <= 0.85x: met', or how far off it is, in the ratio and MiB per session."""
    goal = GOALS.get(key)
    if goal is None:
        return ""
    if ratio <= goal:
        return f"goal <= {goal:.2f}x: met"
    return f"goal <= {goal:.2f}x: {ratio - goal:.2f}x ({(ratio - goal) * base_mib:.0f} MiB) to go"


def report(samples: dict[str, Samples], labels: dict[str, str], n: int) -> None:
    """The table, the goals, the split by kind."""
    runs = max(len(s.trees) for s in samples.values())
    print(
        f"\n{n} sessions each at the QR (simulator page, 64 MiB page heap), whole tree per"
        f" session incl. Node / the daemon; medians of {runs} interleaved rounds; ratios:"
        " medians of each round's ratio to whatsapp-web.js"
    )
    print(
        f"{'':48}{'PSS MiB':>9}{'ratio':>7}{'USS MiB':>9}{'ratio':>7}{'dirty':>7}{'ratio':>7}"
        f"{'procs':>7}{'ready s':>9}"
    )
    base = samples["wwebjs"]
    b_pss = per_session([t.total.pss for t in base.trees], n)
    goals = []
    for key, label in labels.items():
        s = samples[key]
        if not s.trees:
            print(f"{label[:47]:48}{'failed':>9}  {'; '.join(s.errors)[:200]}")
            continue
        pss = per_session([t.total.pss for t in s.trees], n)
        uss = per_session([t.total.uss for t in s.trees], n)
        dirty = per_session([t.total.pss_dirty for t in s.trees], n)
        r_pss, r_uss = ratio(s, base, "pss"), ratio(s, base, "uss")
        r_dirty = ratio(s, base, "pss_dirty")
        procs = statistics.median(t.total.processes for t in s.trees)
        print(
            f"{label[:47]:48}{pss:>9.0f}{r_pss:>7.2f}{uss:>9.0f}{r_uss:>7.2f}{dirty:>7.0f}"
            f"{r_dirty:>7.2f}{procs:>7.0f}{statistics.median(s.ready):>9.1f}"
            + (f"  ({len(s.errors)} failed rounds)" if s.errors else "")
        )
        if key in GOALS:
            goals.append(f"  {label}: PSS {goal_text(key, r_pss, b_pss)} (USS {r_uss:.2f}x)")
    print("\n".join(goals))
    print(
        "  PSS splits shared pages among every process mapping them: other Chromiums running"
        " on this host lower it. USS (pages private to a process) does not move with them;"
        " dirty (PSS of dirty pages: heaps, stacks, relocated data, written shared memory) does"
        " not either, and is what one more session costs on a host that runs others."
    )
    kind_table(samples, n)
    if CANDIDATE in labels:
        print(f"  {CANDIDATE}: {labels[CANDIDATE]}, through the sessions' extra_args")


def kind_table(samples: dict[str, Samples], n: int) -> None:
    """PSS / USS per session and the process count of each kind, every variant side by side."""
    kinds = sorted({k for s in samples.values() for t in s.trees for k in t.kinds}, key=kind_order)
    print("\nper kind of process, MiB per session (medians), PSS / USS (processes in the tree)")
    print(f"{'kind':18}" + "".join(f"{k:>22}" for k in samples))
    for kind in kinds:
        cells = []
        for sample in samples.values():
            mems = [t.kinds.get(kind, Mem()) for t in sample.trees] or [Mem()]
            pss = per_session([m.pss for m in mems], n)
            uss = per_session([m.uss for m in mems], n)
            procs = statistics.median(m.processes for m in mems)
            cells.append(f"{pss:.1f} / {uss:.1f} ({procs:.0f})")
        print(f"{kind:18}" + "".join(f"{c:>22}" for c in cells))
    print(
        "  driver: Node (all whatsapp-web.js clients) or the wasupd daemon, shared by the sessions"
    )


async def side_by_side(args: argparse.Namespace, root: Path) -> None:
    """`--runs` rounds of every variant, the order rotating so drift hits all alike."""
    # Orphans of Node's Chromiums (their crashpad handlers) come to us, as the daemon's come to
    # it: both trees then hold the same kinds of process.
    become_subreaper()
    labels = variants(args.disable_features)
    samples = {key: Samples() for key in labels}
    keys = list(labels)
    async with WwebjsSetup.serving() as setup, setup.plain_sim() as plain_url:
        for r in range(args.runs):
            for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
                t0 = time.monotonic()
                try:
                    tree, ready = await one_round(key, setup, plain_url, root / f"r{r}-{key}", args)
                except Exception as exc:  # a failed round is reported, the others still count
                    samples[key].errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    print(f"  round {r + 1} {key}: {samples[key].errors[-1]}", flush=True)
                    continue
                samples[key].trees.append(tree)
                samples[key].rounds.append(r)
                samples[key].ready.append(ready)
                print(
                    f"  round {r + 1} {key}: {tree.total.pss / args.sessions / MIB:.0f} MiB PSS"
                    f" per session, {time.monotonic() - t0:.0f} s",
                    flush=True,
                )
    report(samples, labels, args.sessions)


def sweep(root: Path) -> None:
    """Kill whatever still names `root` on its command line (the last resort of a stopped run:
    Node, Chromium and the daemon all do)."""
    left = naming(root)
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(left, 10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--sessions", type=int, default=5)
    p.add_argument("--timeout", type=float, default=180.0, help="bound on reaching the QR (s)")
    p.add_argument("--breakdown", action="store_true", help="where one session's PSS goes")
    p.add_argument(
        "--disable-features",
        default="",
        metavar="F1,F2",
        help="also measure the full build with these Chromium features disabled (a candidate)",
    )
    args = p.parse_args()
    if args.runs < 1 or args.sessions < 1:
        p.error("--runs and --sessions must be at least 1")
    root = Path(tempfile.mkdtemp(prefix="wasupd-footprint-"))
    try:
        if args.breakdown:
            from bench.footprint_heap import breakdown

            asyncio.run(breakdown(root))
        else:
            asyncio.run(side_by_side(args, root))
    finally:
        sweep(root)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
