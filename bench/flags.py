"""Which Chromium flags cut memory without changing what the page sees, measured.

Each variant is the baseline flag set (`launcher.BASE_FLAGS`, no memory savers) plus one change,
launched exactly as the daemon launches (pipe, own process group) on the simulator's WhatsApp Web
page until its QR shows, then left to settle. USS and PSS of the whole tree, medians of `--runs`
rounds (variants interleaved in each round, so machine drift hits all alike), both builds.
Three figures, read together:
- PSS: the tree's cost on a host where nothing else shares its pages. Other Chromiums on the
  host (other sessions, other people's) share the binary's and libraries' clean pages and lower
  it, so it moves with what else runs.
- USS: pages mapped by one process only. Not split with siblings, but the binary's code pages
  that only the browser process touches are private while no other Chromium runs and shared as
  soon as one does: tens of MiB either way (measured: the browser process 38 or 90 MiB, same RSS).
  A flag that removes a process makes the pages it shared with its siblings private to them, so
  USS can rise while the tree costs less.
- dirty: PSS of the tree's dirty pages (`Pss_Dirty` of smaps_rollup: heaps, stacks, written
  shared memory). What one more session adds on a host that already runs one: clean file pages
  (code, .pak resources, fonts) are shared by every session's browser. Not moved by other
  Chromiums, so variants are judged on it first.
The "page" column compares what the page can observe (user agent, webdriver, WebGL, screen,
cores, whether WebAssembly compiles...) against the baseline: "same" or the keys that differ.

    python bench/flags.py [--runs 3] [--build full|headless-shell|both] [--budget 170]
                          [--only SUBSTR,...]
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
    wasm_compiles: (() => { try {
      return new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(
        [0, 97, 115, 109, 1, 0, 0, 0]))) instanceof WebAssembly.Instance;
    } catch (e) { return String(e).slice(0, 40); } })(),
  };
}"""


@dataclass(frozen=True)
class Variant:
    """One change to the baseline: switches added, switches of the baseline dropped. Features
    and V8 flags in `add` are merged into the baseline's own `--disable-features`,
    `--enable-features` and `--js-flags` (Chromium keeps only the last of a repeated switch)."""

    label: str
    add: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()


NO_TOP_CHROME = "--disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup"
# Two labels are special-cased in `executable`/`flags`.
VARIANTS: list[Variant] = [
    Variant("baseline"),
    Variant("--disable-gpu", ("--disable-gpu",)),
    Variant("--disable-software-rasterizer", ("--disable-software-rasterizer",)),
    Variant("--in-process-gpu", ("--in-process-gpu",)),
    Variant("--renderer-process-limit=1", ("--renderer-process-limit=1",)),
    Variant("--renderer-process-limit=2", ("--renderer-process-limit=2",)),
    Variant("no spare renderer", ("--disable-features=SpareRendererForSitePerProcess",)),
    Variant("no site isolation", ("--disable-site-isolation-trials",)),
    Variant("--no-startup-window (no initial tab)", ("--no-startup-window",)),
    Variant("cache size 1", ("--disk-cache-size=1", "--media-cache-size=1")),
    Variant("direct binary (no Debian wrapper)"),
    # The full build's --headless=new keeps the desktop browser's WebUI omnibox popup
    # (chrome://omnibox-popup.top-chrome) loaded in a renderer of its own; nothing shows it.
    Variant("no WebUI omnibox popup", (NO_TOP_CHROME,)),
    Variant("no top-chrome WebUI preload", ("--disable-features=PreloadTopChromeWebUI",)),
    # The feature's name in Chromium 156 (content_features.cc); "NetworkServiceInProcess" is gone.
    Variant("network service in process", ("--enable-features=NetworkServiceInProcess2",)),
    Variant("--no-zygote", ("--no-zygote",)),
    Variant("--single-process", ("--single-process",)),
    Variant("with /dev/shm", drop=("--disable-dev-shm-usage",)),
    Variant("V8 --max-semi-space-size=1", ("--js-flags=--max-semi-space-size=1",)),
    Variant("V8 --optimize-for-size", ("--js-flags=--optimize-for-size",)),
    Variant("V8 --max-lazy", ("--js-flags=--max-lazy",)),
    Variant("V8 --lite-mode", ("--js-flags=--lite-mode",)),
    Variant("small PA thread cache", ("--disable-features=PartitionAllocLargeThreadCacheSize",)),
    # What was adopted before the feature switches, to show what they add to it, measured.
    Variant("LEAN_FLAGS switches only", launcher.LEAN_FLAGS),
    Variant("adopted (LEAN_FLAGS)"),
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
    dirty: list[int] = field(default_factory=list)
    procs: list[int] = field(default_factory=list)
    ready: list[float] = field(default_factory=list)
    page: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    failures: int = 0


def executable(label: str, build: BrowserBuild) -> str:
    """The binary to run: what the daemon finds, or for one variant the other kind (Debian's
    /usr/bin script or the binary behind it)."""
    found = launcher.find_executable("", build)
    if label != "direct binary (no Debian wrapper)":
        return found
    return WRAPPER[build] if found == DIRECT[build] else DIRECT[build]


def flags(variant: Variant, build: BrowserBuild, profile: Path) -> list[str]:
    """The baseline command line (`build_args` without the memory savers) changed by `variant`."""
    lean = variant.label == "adopted (LEAN_FLAGS)"
    args = launcher.build_args(
        build=build, profile_dir=profile, user_agent=DEFAULT_USER_AGENT, lean=lean
    )
    if "--no-startup-window" in variant.add:
        args.remove("about:blank")
    args = [a for a in args if a not in variant.drop]
    return merge_switches([*args, *variant.add])


MERGED = {"--disable-features=": ",", "--enable-features=": ",", "--js-flags=": " "}


def merge_switches(args: list[str]) -> list[str]:
    """`args` with each list-valued switch (features, V8 flags) given once, its values joined:
    two `--disable-features` would override each other."""
    lists: dict[str, list[str]] = {}
    rest = []
    for arg in args:
        prefix = next((p for p in MERGED if arg.startswith(p)), None)
        if prefix is None:
            rest.append(arg)
        else:
            lists.setdefault(prefix, []).append(arg.removeprefix(prefix))
    return [*rest, *(p + MERGED[p].join(values) for p, values in lists.items())]


async def run_once(url: str, variant: Variant, build: BrowserBuild) -> Row:
    """Launch, load the page to its QR, settle, measure, stop; one sample in a Row."""
    tmp = Path(tempfile.mkdtemp(prefix="wasupd-flags-"))
    row = Row()
    try:
        req = LaunchRequest(
            session="flags",
            profile_dir=tmp / "profile",
            executable=executable(variant.label, build),
            args=flags(variant, build, tmp / "profile"),
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
            row.dirty.append(tree_dirty(h.pid, h.profile_dir))
            row.procs.append(usage.processes)
            row.page = await h.page.evaluate(FINGERPRINT_JS)
        finally:
            await h.stop(5)
    except Exception as exc:  # a flag that breaks the browser is a result, not a crash
        row.error = f"{type(exc).__name__}: {exc}"[:60]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return row


def tree_processes(root: int, profile: Path) -> list[psutil.Process]:
    """The browser's processes: its descendants and any that escaped them but name the profile."""
    procs = {p.pid: p for p in profile_processes(profile)}
    with contextlib.suppress(psutil.NoSuchProcess):
        root_proc = psutil.Process(root)
        procs.update((p.pid, p) for p in (root_proc, *root_proc.children(recursive=True)))
    return list(procs.values())


def tree_uss(root: int, profile: Path) -> int:
    """Private (unique) bytes of the tree (see the module docstring for what moves it)."""
    total = 0
    for proc in tree_processes(root, profile):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_full_info().uss
    return int(total)


def tree_dirty(root: int, profile: Path) -> int:
    """PSS of the tree's dirty pages (`Pss_Dirty` in smaps_rollup, Linux 5.16+): what another
    session costs, not moved by other Chromiums sharing clean code pages."""
    total = 0
    for proc in tree_processes(root, profile):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{proc.pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss_Dirty:"):
                    total += int(line.split()[1]) * 1024
    return total


def merge(into: Row, one: Row) -> None:
    """Add one run's sample to the variant's row."""
    into.pss += one.pss
    into.uss += one.uss
    into.dirty += one.dirty
    into.procs += one.procs
    into.ready += one.ready
    into.page = into.page or one.page
    into.error = into.error or one.error
    into.failures += bool(one.error)


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
    b_uss, b_pss, b_dirty = (
        (med(base.uss), med(base.pss), med(base.dirty)) if base.pss else (0,) * 3
    )
    spread = (max(base.dirty) - min(base.dirty)) / MIB if base.dirty else 0
    print(f"\n[{build}] whole tree, medians; baseline dirty spread {spread:.1f} MiB")
    print(
        f"{'variant':38}{'USS MiB':>9}{'vs base':>9}{'PSS MiB':>9}{'vs base':>9}"
        f"{'procs':>6}{'ready s':>8}{'n':>3}{'dirty':>8}{'vs base':>9}  page"
    )
    for label, row in rows.items():
        if not row.pss:
            print(f"{label:38}{'failed':>9}  {row.error}")
            continue
        uss, pss, dirty = med(row.uss), med(row.pss), med(row.dirty)
        is_base = label == "baseline"
        d_uss = f"{(uss - b_uss) / MIB:+.1f}" if not is_base else ""
        d_pss = f"{(pss - b_pss) / MIB:+.1f}" if not is_base else ""
        d_dirty = f"{(dirty - b_dirty) / MIB:+.1f}" if not is_base else ""
        print(
            f"{label:38}{uss / MIB:>9.1f}{d_uss:>9}{pss / MIB:>9.1f}{d_pss:>9}"
            f"{med(row.procs):>6.0f}{med(row.ready):>8.2f}{len(row.pss):>3}"
            f"{dirty / MIB:>8.1f}{d_dirty:>9}  {page_diff(row.page, base.page)}"
        )
        if row.error:  # a flag that breaks some launches only is a result too
            print(f"{'':38}failed {row.failures}x: {row.error}")
    print(f"  baseline page: {base.page}")


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--build", default="both", choices=["full", "headless-shell", "both"])
    p.add_argument("--budget", type=float, default=170.0, help="stop starting runs after this (s)")
    p.add_argument("--only", default="", help="comma-separated label substrings (and baseline)")
    args = p.parse_args()
    wanted = [w for w in args.only.split(",") if w]
    variants = [
        v
        for v in VARIANTS
        if v.label == "baseline" or not wanted or any(w in v.label for w in wanted)
    ]
    builds: list[BrowserBuild] = (
        ["full", "headless-shell"] if args.build == "both" else [args.build]
    )
    sim = await SimServer(time_factor=1.0).start()
    try:
        for build in builds:
            deadline = time.monotonic() + args.budget / len(builds)
            rows = {v.label: Row() for v in variants}
            for _ in range(args.runs):
                for variant in variants:
                    if time.monotonic() < deadline:
                        merge(rows[variant.label], await run_once(sim.url, variant, build))
            report(build, rows)
    finally:
        await sim.stop()


if __name__ == "__main__":
    exit_on_sigterm()
    asyncio.run(main())
