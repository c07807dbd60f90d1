"""Linking timelines: scan, restore from the same profile, fresh or wiped profile, logout,
pairing by code."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.sim import (
    QR_ON_SCREEN,
    SOCKET,
    browser_on,
    ev,
    goto,
    link,
    new_page,
    qr_payload,
    recorded,
    until,
    until_async,
)
from tests.sim.conftest import A, B
from wasupd.sim import SimServer
from wasupd.sim.qr import CROCKFORD

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.chromium]
PROGRESS_XPATH = "//*[@id='app']/div/div/div[2]/progress"  # docs/whatsapp-web.md §2c
CREDS_IN_IDB = """() => new Promise((resolve) => { const r = indexedDB.open('wawc');
  r.onsuccess = () => { const g = r.result.transaction('user').objectStore('user').get('creds');
    g.onsuccess = () => resolve(!!g.result); g.onerror = () => resolve(false); };
  r.onerror = () => resolve(false); })"""


async def test_scan_pairing_connected_progress_then_synced(page: Any) -> None:
    """Scan -> PAIRING -> CONNECTED -> loading progress up to 100 -> main_loaded -> hasSynced
    (later than CONNECTED), then the main UI markers; the link is recorded server-side."""
    async with SimServer(time_factor=0.2) as sim:
        await sim.control("add_account", {"phone": A, "name": "Alice"})
        await goto(page, sim.url)
        await sim.control("scan", {"payload": await qr_payload(page), "phone": A})
        xpath = f'document.evaluate("{PROGRESS_XPATH}", document, null, 9, null).singleNodeValue'
        assert await until(page, f"{xpath} && {SOCKET}.state === 'CONNECTED'", 10)
        await until(page, f"{SOCKET}.hasSynced", 10)

        rec = await ev(page, "() => window.__rec")
        kinds = [(k, v) for k, v, _ in rec if k in ("state", "hasSynced", "main_loaded")]
        assert kinds[-5:] == [
            ("state", "UNPAIRED"),
            ("state", "PAIRING"),
            ("state", "CONNECTED"),
            ("main_loaded", True),
            ("hasSynced", True),
        ]
        at = {(k, v): ms for k, v, ms in rec}
        assert (
            at[("hasSynced", True)] - at[("state", "CONNECTED")] >= 700
        )  # 5 s x 0.2, minus jitter
        progress = await recorded(page, "progress")
        assert progress == sorted(progress) and progress[-1] == 100 and len(progress) >= 3

        ui = await ev(
            page,
            """() => ({ two: document.querySelector('.two').tabIndex,
              icons: ['search', 'chat'].map((n) => !!document.querySelector(`[data-icon='${n}']`)),
              wid: window.require('WAWebUserPrefsMeUser').getMaybeMePnUser()._serialized,
              conn: window.require('WAWebConnModel').Conn.serialize(),
              loaded: window.require('WAWebCmd').Cmd.isMainLoaded })""",
        )
        assert ui["two"] == -1 and ui["icons"] == [True, True] and ui["loaded"] is True
        assert ui["wid"] == f"{A}@c.us" and ui["conn"]["pushname"] == "Alice"
        assert ui["conn"]["platform"] == "android"
        assert len(await sim.control("devices", {"phone": A})) == 1


async def test_restore_from_same_profile_without_qr_wiped_profile_gets_qr(
    sim: SimServer, page: Any, tmp_path: Path
) -> None:
    """Link credentials live in the profile's IndexedDB: a restart on the same profile goes
    OPENING -> CONNECTED -> hasSynced with no QR; a fresh profile and a wiped one get a QR."""
    profile = tmp_path / "alice"
    async with browser_on(profile) as browser:
        first = await new_page(browser, incognito=False)
        await link(sim, first, A)
        assert await ev(first, CREDS_IN_IDB)
    async with browser_on(profile) as browser:
        again = await new_page(browser, incognito=False)
        await goto(again, sim.url)
        await until(again, f"{SOCKET}.hasSynced")
        assert await recorded(again, "state") == ["OPENING", "CONNECTED"]
        assert await recorded(again, "ref") == []
        assert len(await sim.control("devices", {"phone": A})) == 1

        await ev(
            again,
            """() => new Promise((resolve) => { const r = indexedDB.open('wawc');
              r.onsuccess = () => { const tx = r.result.transaction('user', 'readwrite');
                tx.objectStore('user').clear(); tx.oncomplete = () => resolve(true); }; })""",
        )  # the profile is wiped (the link credentials are gone)
        async with asyncio.timeout(20):
            await again.reload()
        await until(again, QR_ON_SCREEN)
    await goto(page, sim.url)  # a fresh profile of another browser
    await until(page, QR_ON_SCREEN)


async def test_remote_logout_fires_cmd_logout_and_navigates(sim: SimServer, page: Any) -> None:
    """The phone unlinks the device: Cmd `logout`, navigation to ?post_logout=1, UNPAIRED with a
    QR; the credentials are wiped from the profile and dead on the server."""
    await link(sim, page, A)
    await ev(
        page,
        "() => { window.require('WAWebCmd').Cmd.on('logout', () => { sessionStorage.loggedOut = 'yes'; }); }",
    )
    assert await sim.control("logout", {"phone": A}) == 1
    await until(page, f"location.search === '?post_logout=1' && {QR_ON_SCREEN}")
    assert await ev(page, "() => sessionStorage.loggedOut") == "yes"
    assert not await ev(page, CREDS_IN_IDB)
    assert await sim.control("devices", {"phone": A}) == []


async def test_logout_while_browser_down_invalidates_stored_credentials(
    sim: SimServer, tmp_path: Path
) -> None:
    """A remote logout while the browser is not running revokes the credentials server-side:
    the next start from that profile shows a QR and forgets them."""
    profile = tmp_path / "p"
    async with browser_on(profile) as browser:
        await link(sim, await new_page(browser, incognito=False), A)
    await sim.control("logout", {"phone": A})
    async with browser_on(profile) as browser:
        page = await new_page(browser, incognito=False)
        await goto(page, sim.url)
        await until(page, QR_ON_SCREEN)
        await until_async(page, f"async () => !(await ({CREDS_IN_IDB})())")
        assert "CONNECTED" not in await recorded(page, "state")


async def test_page_logout_unlinks_this_device(sim: SimServer, page: Any) -> None:
    """Socket.logout() on the page unlinks it server-side and leads back to a QR."""
    await link(sim, page, B)
    await ev(page, "() => window.require('WAWebSocketModel').Socket.logout()")
    await until(page, f"location.search === '?post_logout=1' && {QR_ON_SCREEN}")
    assert await sim.control("devices", {"phone": B}) == []


PAIR = """async (phone) => { const api = window.require('WAWebAltDeviceLinkingApi');
  api.setPairingType('ALT_DEVICE_LINKING'); await api.initializeAltDeviceLinking();
  return await api.startAltLinkingFlow(phone, true); }"""
SHOWN_CODE = "document.querySelector('.pairing-code').textContent"


async def test_pairing_code_format_refresh_and_link(page: Any) -> None:
    """startAltLinkingFlow gives 8 Crockford characters shown 4+4; the page refreshes the code
    on the cadence of docs/whatsapp-web.md §3 (the old one dies); typing the current one on
    that phone links."""
    async with SimServer(time_factor=0.01) as sim:  # a code lives 180 s x 0.01 = 1.8 s
        await sim.control("add_account", {"phone": A})
        await sim.control("add_account", {"phone": B})
        await goto(page, sim.url)
        await until(page, QR_ON_SCREEN)
        code = await ev(page, PAIR, A)
        assert re.fullmatch(f"[{CROCKFORD}]{{8}}", code)
        assert await until(page, SHOWN_CODE) == f"{code[:4]}-{code[4:]}"
        assert not await ev(page, "() => !!document.querySelector('div[data-ref]')")
        secret = "() => window.require('WAWebAdvSignatureApi').getADVSecretKey().then(() => 'ok', (e) => e.message)"
        assert await ev(page, secret) == "secretKey is null or undefined"
        with pytest.raises(ValueError, match=f"requested for {A}"):
            await sim.control("enter_code", {"code": code, "phone": B})

        fresh = await until(
            page, f"{SHOWN_CODE} !== {code[:4] + '-' + code[4:]!r} && {SHOWN_CODE}", 10
        )
        with pytest.raises(ValueError, match="unknown pairing code"):
            await sim.control("enter_code", {"code": code, "phone": A})
        await sim.control("enter_code", {"code": fresh.lower(), "phone": A})
        await until(page, f"{SOCKET}.hasSynced", 10)
        assert len(await sim.control("devices", {"phone": A})) == 1


async def test_back_to_qr_linking_and_unknown_number(sim: SimServer, page: Any) -> None:
    """initializeQRLinking() returns to QR refs; a code for a number not on WhatsApp is refused."""
    await goto(page, sim.url)
    await until(page, QR_ON_SCREEN)
    err = await ev(page, f"() => ({PAIR})('15559990000').then(() => 'ok', (e) => e.message)")
    assert "not a simulated account" in err
    await ev(page, PAIR, A)
    await ev(page, "() => window.require('WAWebAltDeviceLinkingApi').initializeQRLinking()")
    payload = await qr_payload(page)
    await sim.control("scan", {"payload": payload, "phone": A})
    await until(page, f"{SOCKET}.hasSynced")
