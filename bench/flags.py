"""Which Chromium flags cut memory without changing what the page sees, measured.

Each variant is the baseline flag set (`launcher.BASE_FLAGS`, no memory savers) plus one change,
launched exactly as the daemon launches (pipe, own process group) on the simulator's WhatsApp Web
page until its QR shows, then left to settle. USS and PSS of the whole tree, medians of `--runs`
rounds (variants interleaved in each round, so machine drift hits all alike), both builds.
USS is not moved by other Chromiums on the host, PSS is; but a flag that removes a process makes
the pages it shared with its siblings private to them, so USS can rise while the tree costs less.
Run alone on the machine, read both: there the tree's PSS is its cost. The "page" column
compares what the page can observe (user agent, webdriver, WebGL, screen, cores...) against the
baseline: "same" or the keys that differ.

    python bench/flags.py [--runs 3] [--build full|headless-shell|both] [--budget 170]
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
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import exit_on_sigterm
from wasupd.config import DEFAULT_USER_AGENT, BrowserBuild
from wasupd.sim import SimServer
from wasupd.supervision import launcher
from wasupd.supervision.process import ChromiumLauncher
from wasupd.supervision.seams import LaunchRequest
from wasupd.watchdogs.resources import measure_tree, profile_processes

MIB = 1 << 20
SETTLE = 1.0
READY_JS = "() => window.require && window.require('WAWebSocketModel').Socket.state === 'UNPAIRED'"
FINGERPRINT_JS = """() => {
  const gl = document.createElement('canvas').getContext('webgl');
  const dbg = gl && gl.getExtension('WEBGL_debug_renderer_info');
  return {
    ua: navigator.userAgent, webdriver: navigator.webdriver, cores: navigator.hardwareConcurrency,
    memory: navigator.deviceMemory, languages: navigator.languages.join(','),
    screen: [screen.width, screen.height, devicePixelRatio].join('x'),
    plugins: navigator.plugins.length, webgl: !!gl,
    webgl_renderer: dbg ? gl.getParameter(dbg.UNMASKED_RENDERER_WEBGL) : null,
    webgl2: !!document.createElement('canvas').getContext('webgl2'),
    wasm: typeof WebAssembly, workers: typeof SharedWorker, idb: !!indexedDB,
    notification: typeof Notification, media: !!navigator.mediaDevices,
  };
}"""

# (label, flags added to the baseline). Two labels are special-cased in `executable`/`flags`.
VARIANTS: list[tuple[str, tuple[str, ...]]] = [
    ("baseline", ()),
    ("--disable-gpu", ("--disable-gpu",)),
    ("--disable-software-rasterizer", ("--disable-software-rasterizer",)),
    ("--in-process-gpu", ("--in-process-gpu",)),
    ("--renderer-process-limit=1", ("--renderer-process-limit=1",)),
    ("--renderer-process-limit=2", ("--renderer-process-limit=2",)),
    ("no spare renderer", ("--disable-features=SpareRendererForSitePerProcess",)),
    ("no site isolation", ("--disable-site-isolation-trials",)),
    ("--no-startup-window (no initial tab)", ("--no-startup-window",)),
    ("cache size 1", ("--disk-cache-size=1", "--media-cache-size=1")),
    ("direct binary (no Debian wrapper)", ()),
    ("adopted (LEAN_FLAGS)", ()),
]
WRAPPER = {"full": "/usr/bin/chromium", "headless-shell": "/usr/bin/chromium-headless-shell"}
DIRECT = {
    "full": "/usr/lib/chromium/chromium",
    "headless-shell": "/usr/lib/chromium/chromium-headless-shell",
}


@dataclass
class Row:
    """Measurements of one variant on one build."""

    pss: list[int] = field(default_factory=list)
    uss: list[int] = field(default_factory=list)
    procs: list[int] = field(default_factory=list)
    ready: list[float] = field(default_factory=list)
    page: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def executable(label: str, build: BrowserBuild) -> str:
    """The binary to run: what the daemon finds, or for one variant the other kind (Debian's
    /usr/bin script or the binary behind it)."""
    found = launcher.find_executable("", build)
    if label != "direct binary (no Debian wrapper)":
        return found
    return WRAPPER[build] if found == DIRECT[build] else DIRECT[build]


def flags(label: str, extra: tuple[str, ...], build: BrowserBuild, profile: Path) -> list[str]:
    """The baseline command line (`build_args` without the memory savers) plus `extra`."""
    lean = label == "adopted (LEAN_FLAGS)"
    args = launcher.build_args(
        build=build, profile_dir=profile, user_agent=DEFAULT_USER_AGENT, lean=lean
    )
    if "--no-startup-window" in extra:
        args.remove("about:blank")
    # Two --disable-features would override each other: merge them into one.
    feats = [a.split("=", 1)[1] for a in [*args, *extra] if a.startswith("--disable-features=")]
    rest = [a for a in [*args, *extra] if not a.startswith("--disable-features=")]
    return [*rest, "--disable-features=" + ",".join(feats)]


async def run_once(url: str, label: str, extra: tuple[str, ...], build: BrowserBuild) -> Row:
    """Launch, load the page to its QR, settle, measure, stop; one sample in a Row."""
    tmp = Path(tempfile.mkdtemp(prefix="wasupd-flags-"))
    row = Row()
    try:
        req = LaunchRequest(
            session="flags",
            profile_dir=tmp / "profile",
            executable=executable(label, build),
            args=flags(label, extra, build, tmp / "profile"),
            url=url,
            user_agent=DEFAULT_USER_AGENT,
            start_timeout=30,
        )
        t0 = time.perf_counter()
        h = await ChromiumLauncher(tmp / "logs").launch(req)
        try:
            await h.page.goto(url)
            await h.page.waitForFunction(READY_JS, timeout=30000)
            row.ready.append(time.perf_counter() - t0)
            await asyncio.sleep(SETTLE)  # let the page and the browser settle before measuring
            usage = measure_tree(h.pid, h.profile_dir)
            row.pss.append(usage.pss_bytes)
            row.uss.append(tree_uss(h.pid, h.profile_dir))
            row.procs.append(usage.processes)
            row.page = await h.page.evaluate(FINGERPRINT_JS)
        finally:
            await h.stop(5)
    except Exception as exc:  # a flag that breaks the browser is a result, not a crash
        row.error = f"{type(exc).__name__}: {exc}"[:60]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return row


def tree_uss(root: int, profile: Path) -> int:
    """Private (unique) bytes of the tree: unlike PSS, not moved by other Chromiums on the host
    that share library pages with this one, so it is what the flag comparison is judged on."""
    procs = {p.pid: p for p in profile_processes(profile)}
    with contextlib.suppress(psutil.NoSuchProcess):
        root_proc = psutil.Process(root)
        procs.update((p.pid, p) for p in (root_proc, *root_proc.children(recursive=True)))
    total = 0
    for proc in procs.values():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_full_info().uss
    return int(total)


def merge(into: Row, one: Row) -> None:
    """Add one run's sample to the variant's row."""
    into.pss += one.pss
    into.uss += one.uss
    into.procs += one.procs
    into.ready += one.ready
    into.page = into.page or one.page
    into.error = into.error or one.error


def page_diff(page: dict[str, Any], base: dict[str, Any]) -> str:
    """'same', or the page-visible keys that differ from the baseline."""
    if not page:
        return "-"
    diff = [k for k in base if page.get(k) != base.get(k)]
    return "same" if not diff else "DIFFERS: " + ",".join(diff)


def report(build: str, rows: dict[str, Row]) -> None:
    """Print one build's table: medians, differences to the baseline, page-visible changes."""
    base = rows["baseline"]
    med = statistics.median
    b_uss, b_pss = (med(base.uss), med(base.pss)) if base.pss else (0, 0)
    spread = (max(base.uss) - min(base.uss)) / MIB if base.uss else 0
    print(f"\n[{build}] whole tree, medians; baseline USS spread {spread:.1f} MiB")
    print(
        f"{'variant':38}{'USS MiB':>9}{'vs base':>9}{'PSS MiB':>9}{'vs base':>9}"
        f"{'procs':>6}{'ready s':>8}{'n':>3}  page"
    )
    for label, row in rows.items():
        if not row.pss:
            print(f"{label:38}{'failed':>9}  {row.error}")
            continue
        uss, pss = med(row.uss), med(row.pss)
        d_uss = f"{(uss - b_uss) / MIB:+.1f}" if label != "baseline" else ""
        d_pss = f"{(pss - b_pss) / MIB:+.1f}" if label != "baseline" else ""
        print(
            f"{label:38}{uss / MIB:>9.1f}{d_uss:>9}{pss / MIB:>9.1f}{d_pss:>9}"
            f"{med(row.procs):>6.0f}{med(row.ready):>8.2f}{len(row.pss):>3}"
            f"  {page_diff(row.page, base.page)}"
        )
    print(f"  baseline page: {base.page}")


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--build", default="both", choices=["full", "headless-shell", "both"])
    p.add_argument("--budget", type=float, default=170.0, help="stop starting runs after this (s)")
    args = p.parse_args()
    builds: list[BrowserBuild] = (
        ["full", "headless-shell"] if args.build == "both" else [args.build]
    )
    sim = await SimServer(time_factor=1.0).start()
    try:
        for build in builds:
            deadline = time.monotonic() + args.budget / len(builds)
            rows = {label: Row() for label, _ in VARIANTS}
            for _ in range(args.runs):
                for label, extra in VARIANTS:
                    if time.monotonic() < deadline:
                        merge(rows[label], await run_once(sim.url, label, extra, build))
            report(build, rows)
    finally:
        await sim.stop()


if __name__ == "__main__":
    exit_on_sigterm()
    asyncio.run(main())
