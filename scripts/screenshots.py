"""Regenerate docs/img/sim-landing.png and docs/img/sim-main.png from the simulator.

The only writer of those pictures: tests take and check the same screens, but into their
tmp_path. Run it from the repository root with the project's virtualenv:
`.venv/bin/python scripts/screenshots.py` (needs Chromium, like `make test`).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import chromium  # noqa: E402
from tests.helpers.sim import QR_ON_SCREEN, link, qr_payload, screenshot, until  # noqa: E402
from wasupd.sim import SimServer  # noqa: E402

OUT = ROOT / "docs" / "img"
ALICE, BOB, CAROL = "15550001111", "15550002222", "15550003333"
VIEWPORT = {"width": 1280, "height": 800}  # the size the docs show


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="wasupd-shot-"))
    try:
        async with SimServer(time_factor=0.2) as sim:
            for phone, name in ((ALICE, "Alice"), (BOB, "Bob"), (CAROL, "Carol")):
                await sim.control("add_account", {"phone": phone, "name": name})
            async with chromium.running(chromium.request(tmp / "p", session="shot")) as h:
                await shoot(sim, h.page)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def shoot(sim: SimServer, page: Any) -> None:
    """The landing screen with its QR, then Alice's chats after Carol wrote to her."""
    OUT.mkdir(parents=True, exist_ok=True)
    await page.setViewport(VIEWPORT)
    async with asyncio.timeout(20):
        await page.goto(sim.url)
    await qr_payload(page)
    await until(page, QR_ON_SCREEN)
    await screenshot(page, OUT / "sim-landing.png")
    await link(sim, page, ALICE)
    await sim.control("inject", {"to": ALICE, "from": CAROL, "text": "Carol here"})
    await until(
        page, "document.querySelector('.two') && document.body.innerText.includes('Carol here')"
    )
    await screenshot(page, OUT / "sim-main.png")
    print(f"wrote {OUT / 'sim-landing.png'} and {OUT / 'sim-main.png'}")


if __name__ == "__main__":
    asyncio.run(main())
