"""A double run: two pages presenting one device's credentials get a CONFLICT for one of them,
and the simulator records it (its control API's `conflicts`)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.sim import SOCKET, browser_on, ev, goto, link, new_page, recorded, send, until
from tests.helpers.waiting import eventually_async
from tests.sim.conftest import A, B
from wasupd.sim import SimServer

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.chromium]
OPEN_CHAT = (
    "(to) => window.require('WAWebFindChatAction').findOrCreateLatestChat(to).then(() => true)"
)


async def pages_of(sim: SimServer, phone: str) -> list[dict[str, Any]]:
    """The simulator's view of `phone`'s pages, oldest first."""
    state = await sim.control("state")
    return [p for p in state["pages"] if p["phone"] == phone]


async def test_a_copied_profile_replaces_the_running_one(sim: SimServer, tmp_path: Path) -> None:
    """Two browsers on copies of one linked profile (a profile moved to another host while
    the first still runs): the newcomer is CONNECTED, the first goes to CONFLICT and nothing
    reaches it; the conflict names both pages and the device."""
    first_profile, copy = tmp_path / "first", tmp_path / "copy"
    async with browser_on(first_profile) as browser:
        await link(sim, await new_page(browser, incognito=False), A)
    shutil.copytree(first_profile, copy, ignore=shutil.ignore_patterns("Singleton*"))
    assert await sim.control("conflicts") == []
    async with browser_on(first_profile) as one, browser_on(copy) as two:
        old = await new_page(one, incognito=False)
        await goto(old, sim.url)
        await until(old, f"{SOCKET}.hasSynced")
        (old_id,) = [p["page"] for p in await pages_of(sim, A)]
        assert await sim.control("conflicts") == []  # one page of the device: no conflict
        assert await ev(old, OPEN_CHAT, f"{B}@c.us")  # later, finding it would need the server

        new = await new_page(two, incognito=False)
        await goto(new, sim.url)
        await until(new, f"{SOCKET}.hasSynced")
        await until(old, f"{SOCKET}.state === 'CONFLICT'")
        assert await recorded(new, "ref") == []  # restored from the copy, no QR
        (conflict,) = await sim.control("conflicts", {"phone": A})
        new_id = next(p["page"] for p in await pages_of(sim, A) if p["page"] != old_id)
        assert (conflict["page"], conflict["by"], conflict["how"]) == (old_id, new_id, "connect")
        assert conflict["device"] == (await sim.control("devices", {"phone": A}))[0]
        assert len(await sim.control("devices", {"phone": A})) == 1

        await sim.control("inject", {"to": A, "from": B, "text": "to the active page"})
        await until(
            new, "window.__rec.some(([k, v]) => k === 'add' && v.body === 'to the active page')"
        )
        refused = await send(old, f"{B}@c.us", "from the replaced page")
        sent = await send(new, f"{B}@c.us", "from the active page")
        await until(new, f"window.__results && window.__results[{sent['id']!r}]")
        got = await sim.control("received", {"phone": B})
        assert [m["body"] for m in got] == ["from the active page"]
        assert await ev(old, f"() => (window.__results || {{}})[{refused['id']!r}]") is None
        assert not [v for v in await recorded(old, "add") if v["body"] == "to the active page"]


async def test_takeover_conflicts_the_other_page(sim: SimServer, browser: Any) -> None:
    """A second tab of one profile takes the device over; `Socket.takeover()` on the first
    makes it active again and conflicts the second. Another device of the same account is
    never in conflict (multi-device allows several)."""
    context = await browser.createIncognitoBrowserContext()
    try:
        first = await context.newPage()
        await link(sim, first, A)
        other_device = await new_page(browser)
        await link(sim, other_device, A)
        assert await sim.control("conflicts") == []  # two devices of A: allowed

        second = await context.newPage()  # same context: same IndexedDB, same credentials
        await goto(second, sim.url)
        await until(second, f"{SOCKET}.hasSynced")
        await until(first, f"{SOCKET}.state === 'CONFLICT'")
        await ev(first, f"() => {SOCKET}.takeover()")
        await until(first, f"{SOCKET}.state === 'CONNECTED'")
        await until(second, f"{SOCKET}.state === 'CONFLICT'")
        conflicts = await sim.control("conflicts", {"phone": A})
        assert [c["how"] for c in conflicts] == ["connect", "takeover"]
        assert conflicts[0]["page"] == conflicts[1]["by"]  # the first page, replaced then back
        assert conflicts[0]["by"] == conflicts[1]["page"]
        states = await eventually_async(
            lambda: pages_of(sim, A),
            10,
            "the server's view of the three pages",
            ok=lambda ps: sorted(p["state"] for p in ps) == ["CONFLICT", "CONNECTED", "CONNECTED"],
        )
        assert len(states) == 3
        await other_device.target.browserContext.close()
    finally:
        await context.close()
