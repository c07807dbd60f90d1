"""The bare-browser side of the sessions benchmark: a minimal pyppeteer script, no daemon.

What a person would write to open the page in headless Chromium: `pyppeteer.launch` with the
same build, the flags any closed-network headless run needs, a fresh profile, one page, `goto`,
wait until the page is ready. `bare_session()` reports start-to-ready seconds, PSS and process
count of the whole tree (measured exactly, after the same settle time the daemon's side gets) and
stop seconds, so `bench/sessions.py` can put wasupd's figures next to it as ratios.

    python bench/sessions_bare.py [--url URL] [--build full|headless-shell] [--runs 3]

Without --url it serves the WhatsApp Web simulator in-process and measures on that.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import exit_on_sigterm
from wasupd.config import BrowserBuild
from wasupd.supervision.launcher import find_executable
from wasupd.watchdogs.resources import measure_tree

# The simulator (and WhatsApp Web) showing its login QR.
READY_JS = "() => window.require && window.require('WAWebSocketModel').Socket.state === 'UNPAIRED'"
# What any headless run on a closed network as root needs; nothing wasupd-specific.
MINIMAL_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@dataclass(frozen=True, slots=True)
class BareResult:
    """One bare run: seconds from launch to ready, tree PSS bytes and processes, stop seconds."""

    ready_s: float
    pss_bytes: int
    processes: int
    stop_s: float


async def bare_session(
    url: str,
    build: BrowserBuild,
    *,
    ready_js: str = READY_JS,
    settle: float = 2.0,
    timeout: float = 60.0,
    executable: str = "",
) -> BareResult:
    """Launch a bare Chromium of `build` on `url`, wait for `ready_js`, settle, measure, close."""
    import pyppeteer

    profile = Path(tempfile.mkdtemp(prefix="wasupd-bare-"))
    t0 = time.perf_counter()
    browser = await pyppeteer.launch(
        executablePath=executable or find_executable("", build),
        headless=True,
        userDataDir=str(profile),
        handleSIGINT=False,
        handleSIGTERM=False,
        handleSIGHUP=False,
        autoClose=False,  # closed below; pyppeteer's atexit hook would use a closed loop
        args=[*MINIMAL_ARGS, *(["--headless=new"] if build == "full" else [])],
    )
    try:
        async with asyncio.timeout(timeout):
            page = await browser.newPage()
            await page.goto(url)
            await page.waitForFunction(ready_js, timeout=timeout * 1000)
        ready = time.perf_counter() - t0
        await asyncio.sleep(settle)  # the same settle time the daemon's session is given
        usage = measure_tree(browser.process.pid, profile)
    finally:
        t1 = time.perf_counter()
        await browser.close()  # returns before the browser has exited: wait for that too
        await asyncio.to_thread(browser.process.wait, timeout)
        stop = time.perf_counter() - t1
        shutil.rmtree(profile, ignore_errors=True)
    return BareResult(ready, usage.pss_bytes, usage.processes, stop)


async def bare_runs(url: str, build: BrowserBuild, runs: int) -> list[BareResult]:
    """`runs` bare sessions one after the other (sequential: PSS splits pages shared between
    concurrent browsers, so concurrent runs would measure less than one browser costs)."""
    return [await bare_session(url, build) for _ in range(runs)]


def medians(results: list[BareResult]) -> BareResult:
    """Field-wise medians."""
    return BareResult(
        statistics.median(r.ready_s for r in results),
        int(statistics.median(r.pss_bytes for r in results)),
        int(statistics.median(r.processes for r in results)),
        statistics.median(r.stop_s for r in results),
    )


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default="")
    p.add_argument("--build", default="full", choices=["full", "headless-shell"])
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    from wasupd.sim import SimServer

    sim = None if args.url else await SimServer(time_factor=1.0).start()
    try:
        url = sim.url if sim is not None else args.url
        m = medians(await bare_runs(url, args.build, args.runs))
    finally:
        if sim is not None:
            await sim.stop()
    print(
        f"bare {args.build}, median of {args.runs}: ready {m.ready_s:.2f} s, PSS"
        f" {m.pss_bytes / (1 << 20):.0f} MiB, {m.processes} processes, stop {m.stop_s:.2f} s"
    )


if __name__ == "__main__":
    exit_on_sigterm()
    asyncio.run(main())
