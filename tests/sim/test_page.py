"""The simulator driven directly with real headless Chromium (no daemon): its timelines and surface."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image
from pyppeteer.errors import NetworkError

from wasupd.sim import SimServer
from wasupd.supervision.launcher import build_args, find_executable
from wasupd.supervision.process import ChromiumHandle, ChromiumLauncher
from wasupd.supervision.seams import LaunchRequest

A, B = "15550001111", "15550002222"
SOCKET = "window.require('WAWebSocketModel').Socket"


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    s = await SimServer(time_factor=0.02).start()
    s.world.add_account(A)
    s.world.add_account(B)
    yield s
    await s.stop()


async def browser(tmp: Path, profile: str) -> ChromiumHandle:
    d = tmp / profile
    args = build_args(build="full", profile_dir=d, user_agent="")
    return await ChromiumLauncher(tmp / "logs").launch(
        LaunchRequest(
            session=profile,
            profile_dir=d,
            executable=find_executable("", "full"),
            args=args,
            url="",
            user_agent="",
            start_timeout=30,
        )
    )


async def until(page: Any, js: str, timeout: float = 15) -> Any:
    """Evaluate `js` until truthy; survives navigations (logout reloads the page)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            value = await page.evaluate(
                f"() => {{ try {{ const v = ({js}); return v instanceof Node ? true : v; }}"
                " catch (e) { return null; } }"
            )
            if value:
                return value
        except NetworkError:
            pass  # the page navigated under us: ask again
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {js}"
        await asyncio.sleep(0.05)


async def link(sim: SimServer, page: Any, phone: str) -> None:
    await page.goto(sim.url)
    await until(
        page, f"{SOCKET}.state === 'UNPAIRED' && document.querySelector('div[data-ref] canvas')"
    )
    payload = await page.evaluate("() => document.querySelector('div[data-ref]').dataset.ref")
    await sim.control("scan", {"payload": payload, "phone": phone})
    await until(page, f"{SOCKET}.hasSynced")


async def test_cold_start_qr_rotation_idle_and_reload(sim: SimServer, tmp_path: Path) -> None:
    """OPENING -> UNPAIRED with a scannable QR equal to data-ref; refs rotate; UNPAIRED_IDLE; reload."""
    h = await browser(tmp_path, "p1")
    try:
        page = h.page
        await page.goto(sim.url)
        await until(page, "window.Debug && window.Debug.VERSION")
        with pytest.raises(Exception, match="unknown module"):
            await page.evaluate("() => window.require('WAWebNoSuchThing')")
        await until(
            page, f"{SOCKET}.state === 'UNPAIRED' && document.querySelector('div[data-ref] canvas')"
        )
        ref = await page.evaluate("() => document.querySelector('div[data-ref]').dataset.ref")
        parts = ref.split(",")
        assert len(parts) == 5 and parts[0].startswith("2@") and 75 <= len(parts[0]) <= 90
        assert [len(p) for p in parts[1:4]] == [44, 44, 44]
        png = await (await page.querySelector("div[data-ref] canvas")).screenshot()
        assert zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))[0].text == ref
        first = await page.evaluate("() => window.require('WAWebConnModel').Conn.ref")
        await until(page, f"window.require('WAWebConnModel').Conn.ref !== {first!r}", 10)
        await until(
            page,
            f"{SOCKET}.state === 'UNPAIRED_IDLE' && document.querySelector('div[data-ref] button')",
            20,
        )
        await page.click("div[data-ref] button")
        await until(page, f"{SOCKET}.state === 'UNPAIRED'")
    finally:
        await h.stop(5)


async def test_link_send_receive_acks_restore_and_logout(sim: SimServer, tmp_path: Path) -> None:
    """Two linked browsers exchange a message with acks 1->3; a reload restores without QR; a
    fresh profile gets a QR; a remote logout navigates to post_logout=1 and shows a QR."""
    ha, hb = await browser(tmp_path, "a"), await browser(tmp_path, "b")
    try:
        await link(sim, ha.page, A)
        await link(sim, hb.page, B)
        assert await ha.page.evaluate("() => !!document.querySelector(\"[data-icon='search']\")")
        await hb.page.evaluate("""() => { window.got = [];
            window.require('WAWebCollections').Msg.on('add', m => { if (m.isNewMsg) window.got.push(m.serialize()); }); }""")
        await ha.page.evaluate(
            """async (to) => {
            const R = window.require; const wid = R('WAWebWidFactory').createWid(to);
            const {chat} = await R('WAWebFindChatAction').findOrCreateLatestChat(wid);
            const id = await R('WAWebMsgKey').newId();
            const MsgKey = R('WAWebMsgKey');
            const key = new MsgKey({from: R('WAWebUserPrefsMeUser').getMaybeMePnUser(), to: chat.id, id, selfDir: 'out'});
            window.acks = [];
            R('WAWebCollections').Msg.on('change:ack', (m, a) => window.acks.push(a));
            const [p, r] = R('WAWebSendMsgChatAction').addAndSendMsgToChat(chat, {id: key, body: 'hi ✓', type: 'chat'});
            await p; window.result = await r; window.sentKey = key._serialized; }""",
            f"{B}@c.us",
        )
        got = await until(hb.page, "window.got.length && window.got[0]")
        assert got["body"] == "hi ✓" and got["id"]["fromMe"] is False
        assert await ha.page.evaluate("() => window.result") == "OK"
        await until(ha.page, "window.acks.includes(3)")
        assert [m["body"] for m in sim.world.accounts[B].received] == ["hi ✓"]
        key = await ha.page.evaluate("() => window.sentKey")
        assert key.startswith(f"true_{B}@c.us_3EB0")
        await ha.page.reload()
        await until(ha.page, f"{SOCKET}.hasSynced")
        assert await ha.page.evaluate(
            f"() => !!window.require('WAWebCollections').Msg.get({key!r})"
        )
        assert len(sim.world.accounts[A].devices) == 1
        assert not await ha.page.evaluate(
            "async () => await window.require('WAWebQueryExistsJob').queryWidExists('15559999999@c.us')"
        )
        await sim.remote_logout(A)
        await until(
            ha.page, f"location.search.includes('post_logout=1') && {SOCKET}.state === 'UNPAIRED'"
        )
    finally:
        await ha.stop(5)
        await hb.stop(5)
    hc = await browser(tmp_path, "fresh")
    try:
        await hc.page.goto(sim.url)
        await until(hc.page, f"{SOCKET}.state === 'UNPAIRED'")
    finally:
        await hc.stop(5)


async def test_pairing_code_format_and_link(sim: SimServer, tmp_path: Path) -> None:
    """startAltLinkingFlow returns 8 Crockford characters shown 4+4; entering it links."""
    h = await browser(tmp_path, "code")
    try:
        await h.page.goto(sim.url)
        await until(h.page, f"{SOCKET}.state === 'UNPAIRED'")
        code = await h.page.evaluate(
            """async (p) => { const api = window.require('WAWebAltDeviceLinkingApi');
            api.setPairingType('ALT_DEVICE_LINKING'); await api.initializeAltDeviceLinking();
            return await api.startAltLinkingFlow(p, true); }""",
            A,
        )
        assert len(code) == 8 and set(code) <= set("123456789ABCDEFGHJKLMNPQRSTVWXYZ")
        shown = await until(h.page, "document.querySelector('.pairing-code').textContent")
        assert shown == f"{code[:4]}-{code[4:]}"
        await sim.control("enter_code", {"code": code, "phone": A})
        await until(h.page, f"{SOCKET}.hasSynced")
    finally:
        await h.stop(5)


@pytest.mark.parametrize("kind", ["tos_block", "conflict"])
async def test_state_faults(sim: SimServer, tmp_path: Path, kind: str) -> None:
    """State faults reach a linked page as Socket.state."""
    h = await browser(tmp_path, kind)
    try:
        await link(sim, h.page, A)
        await sim.control("fault", {"kind": kind})
        await until(h.page, f"{SOCKET}.state === {kind.upper()!r}")
    finally:
        await h.stop(5)


async def test_server_down_up_and_memory_balloon(sim: SimServer, tmp_path: Path) -> None:
    """Server down: a linked page times out; server up: it reconnects. A memory balloon is held."""
    h = await browser(tmp_path, "faults")
    try:
        await link(sim, h.page, A)
        await sim.control("fault", {"kind": "server_down"})
        await until(h.page, f"{SOCKET}.state === 'TIMEOUT'")
        await sim.control("fault", {"kind": "server_up"})
        await until(h.page, f"{SOCKET}.state === 'CONNECTED'", 20)
        before = h.usage().pss_bytes
        await sim.control("fault", {"kind": "memory", "mib": 200})
        deadline = asyncio.get_running_loop().time() + 15
        while h.usage().pss_bytes < before + (150 << 20):
            assert asyncio.get_running_loop().time() < deadline, "the balloon did not show in PSS"
            await asyncio.sleep(0.2)
    finally:
        await h.stop(5)
