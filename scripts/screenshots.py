"""Regenerate docs/img/sim-landing.png and docs/img/sim-main.png from the simulator."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wasupd.sim import SimServer  # noqa: E402
from wasupd.supervision.launcher import build_args, find_executable  # noqa: E402
from wasupd.supervision.process import ChromiumLauncher  # noqa: E402
from wasupd.supervision.seams import LaunchRequest  # noqa: E402


async def main() -> None:
    sim = await SimServer(time_factor=0.2).start()
    sim.world.add_account("15550001111")
    tmp = Path(tempfile.mkdtemp(prefix="wasupd-shot-"))
    args = build_args(build="full", profile_dir=tmp / "p", user_agent="")
    h = await ChromiumLauncher(tmp / "logs").launch(
        LaunchRequest(
            session="shot",
            profile_dir=tmp / "p",
            executable=find_executable("", "full"),
            args=args,
            url=sim.url,
            user_agent="",
            start_timeout=30,
        )
    )
    try:
        await h.page.goto(sim.url)
        await h.page.waitForFunction("() => !!document.querySelector('div[data-ref] canvas')")
        await h.page.screenshot(path=str(ROOT / "docs/img/sim-landing.png"))
        payload = await h.page.evaluate("document.querySelector('div[data-ref]').dataset.ref")
        await sim.control("scan", {"payload": payload, "phone": "15550001111"})
        await h.page.waitForFunction(
            "() => { const r = window.require && window.require('WAWebSocketModel');"
            " return !!(r && r.Socket.hasSynced && document.querySelector('.two')); }"
        )
        await sim.inject("15550001111", "15550002222", "hello")
        await h.page.screenshot(path=str(ROOT / "docs/img/sim-main.png"))
    finally:
        await h.stop(5)
        await sim.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
