"""Cold start, the module surface, the QR (payload, canvas, rotation, idle, reload)."""

from __future__ import annotations

import base64
import itertools
import statistics
from pathlib import Path
from typing import Any

import pytest
import zxingcpp

from tests.helpers.sim import (
    QR_ON_SCREEN,
    SOCKET,
    decode_canvas,
    ev,
    goto,
    qr_payload,
    recorded,
    screenshot,
    until,
)
from tests.sim.conftest import A
from wasupd.sim import SimServer
from wasupd.sim.server import VERSION

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.chromium]

# What wwebjs builds from the page's modules (docs/whatsapp-web.md §1a), to compare with
# data-ref.
BUILD_QR = """async () => {
  const R = window.require;
  const noise = await R('WAWebUserPrefsInfoStore').waNoiseInfo.get();
  const reg = await R('WAWebSignalStoreApi').waSignalStore.getRegistrationInfo();
  const b64 = R('WABase64').encodeB64;
  return [R('WAWebConnModel').Conn.ref, b64(noise.staticKeyPair.pubKey), b64(reg.identityKeyPair.pubKey),
    await R('WAWebAdvSignatureApi').getADVSecretKey(), R('WAWebCompanionRegClientUtils').DEVICE_PLATFORM].join(',');
}"""

SURFACE = """() => {
  const R = window.require, t = (v) => typeof v;
  const S = R('WAWebSocketModel').Socket, Cmd = R('WAWebCmd').Cmd, Conn = R('WAWebConnModel').Conn;
  const C = R('WAWebCollections'), Alt = R('WAWebAltDeviceLinkingApi');
  return {
    socket: [t(S.on), t(S.off), t(S.once), t(S.logout), t(S.takeover), t(S.reconnect), t(S.poke), t(S.hasSynced)],
    conn: [t(Conn.serialize), t(Conn.on)], cmd: [t(Cmd.refreshQR), t(Cmd.on), t(Cmd.isMainLoaded)],
    alt: [t(Alt.setPairingType), t(Alt.initializeAltDeviceLinking), t(Alt.startAltLinkingFlow), t(Alt.initializeQRLinking)],
    collections: [t(C.Msg.get), t(C.Msg.on), t(C.Msg.getModelsArray), t(C.Chat.get), t(C.Msg.modelClass), t(C.Msg.getMessagesById)],
    misc: [t(R('WAWebWidFactory').createWid), t(R('WAWebMsgKey').newId), t(R('WAWebUserPrefsMeUser').getMaybeMePnUser),
      t(R('WAWebSendMsgChatAction').addAndSendMsgToChat), t(R('WAWebFindChatAction').findOrCreateLatestChat),
      t(R('WAWebQueryExistsJob').queryWidExists), t(R('WAWebGetEphemeralFieldsMsgActionsUtils').getEphemeralFields),
      t(R('WAWebStreamModel').Stream.markAvailable), t(R('WAWebUpdateUnreadChatAction').sendSeen),
      t(R('WAWebChatGetters').getIsNewsletter), t(R('WALinkify').findLink), t(R('WAWebMiscBrowserUtils').info),
      t(R('WAWebOfflineHandler').OfflineMessageHandler.getOfflineDeliveryProgress)],
    keyAsync: R('WAWebAdvSignatureApi').getADVSecretKey() instanceof Promise,
  };
}"""


async def test_cold_start_shows_a_qr_equal_to_data_ref_and_canvas(
    sim: SimServer, page: Any, tmp_path: Path
) -> None:
    """OPENING -> UNPAIRED; data-ref holds the 5-part payload wwebjs would build, and the canvas
    decodes to exactly that; the module surface and the loader's error match real WhatsApp Web."""
    await page.setViewport({"width": 1280, "height": 800})
    await goto(page, sim.url)
    payload = await qr_payload(page)
    assert (await recorded(page, "state"))[:2] == ["OPENING", "UNPAIRED"]
    assert await ev(page, "() => window.Debug.VERSION") == VERSION
    err = await ev(
        page,
        "() => { try { window.require('WAWebNoSuchThing'); } catch (e) { return e.message; } }",
    )
    assert err == 'Requiring unknown module "WAWebNoSuchThing"'

    parts = payload.split(",")
    assert [len(p) for p in parts] == [82, 44, 44, 44, 1] and parts[0].startswith("2@")
    assert all(len(base64.b64decode(p)) == 32 for p in parts[1:4])
    assert await ev(page, BUILD_QR) == payload
    assert await decode_canvas(page) == [payload]
    assert parts[0] == await ev(page, "() => window.require('WAWebConnModel').Conn.ref")

    surface = await ev(page, SURFACE)
    assert (
        all(kind == "function" for kind in surface["socket"][:7])
        and surface["socket"][7] == "boolean"
    )
    assert set(surface["misc"] + surface["alt"] + surface["collections"][:4]) == {"function"}
    assert surface["keyAsync"] is True
    # WPP's detection: body > div > div > .landing-wrapper plus a canvas
    # (docs/whatsapp-web.md §1c).
    assert await ev(
        page, "() => !!document.querySelector('body > div > div > .landing-wrapper canvas')"
    )
    # The landing screen as a user sees it: its picture shows the same QR.
    image = await screenshot(page, tmp_path / "sim-landing.png")
    assert [r.text for r in zxingcpp.read_barcodes(image)] == [payload]


async def test_refs_rotate_six_times_then_idle_and_reload(page: Any) -> None:
    """6 refs (first 60 s, then 20 s each, scaled), change:ref (model, ref) each time, then
    UNPAIRED_IDLE with the reload button inside [data-ref]; the last QR no longer links; a
    click brings UNPAIRED back with a new batch."""
    async with SimServer(time_factor=0.02) as sim:
        await sim.control("add_account", {"phone": A})
        await goto(page, sim.url)
        await until(page, QR_ON_SCREEN)
        await until(page, f"{SOCKET}.state === 'UNPAIRED_IDLE'", 15)
        button = "document.querySelector('div[data-ref] > span > button')"
        assert await until(page, button)
        rec = await ev(page, "() => window.__rec")
        refs = [(value, ms) for kind, value, ms in rec if kind == "ref"]
        assert len(refs) == 6 and len({r for r, _ in refs}) == 6
        assert all(r.startswith("2@") and len(r) == 82 for r, _ in refs)
        gaps = [b - a for (_, a), (_, b) in itertools.pairwise(refs)]
        # 60 s x 0.02 then 20 s x 0.02; the upper bounds only catch a wrong schedule (a loaded
        # machine delays timers; a late message can shorten the gap after it a little).
        assert 900 <= gaps[0] <= 4000, gaps
        assert all(250 <= g <= 2000 for g in gaps[1:]), gaps
        assert gaps[0] > 2 * statistics.median(gaps[1:]), gaps
        assert "bad-model" not in [kind for kind, _, _ in rec]

        stale = await ev(
            page, "() => document.querySelector('div[data-ref]').getAttribute('data-ref')"
        )
        with pytest.raises(ValueError, match="not on offer"):
            await sim.control("scan", {"payload": stale, "phone": A})

        await ev(page, f"() => {button}.click()")
        await until(page, f"{SOCKET}.state === 'UNPAIRED' && !{button}")
        assert len(set(await recorded(page, "ref"))) == 7


async def test_scan_refuses_stale_malformed_and_unknown(sim: SimServer, page: Any) -> None:
    """A ref that rotated away, a payload with the wrong shape or keys, and an unregistered
    phone are refused with messages that say what is wrong."""
    await goto(page, sim.url)
    current = await qr_payload(page)
    ref, *keys = current.split(",")
    with pytest.raises(ValueError, match="4 or 5"):
        await sim.control("scan", {"payload": "2@abc,def", "phone": A})
    with pytest.raises(ValueError, match="noise key"):
        await sim.control("scan", {"payload": ",".join([ref, "short", *keys[1:]]), "phone": A})
    with pytest.raises(ValueError, match="not a simulated account"):
        await sim.control("scan", {"payload": current, "phone": "15559990000"})
    other = "2@" + "A" * 80
    with pytest.raises(ValueError, match="not on offer"):
        await sim.control("scan", {"payload": ",".join([other, *keys]), "phone": A})
    conn_ref = "window.require('WAWebConnModel').Conn.ref"
    second = await until(page, f"{conn_ref} !== {ref!r} && {conn_ref}", 10)
    await until(page, f"{conn_ref} !== {second!r}", 10)  # two rotations: past any grace
    with pytest.raises(ValueError, match="expired"):
        await sim.control("scan", {"payload": current, "phone": A})
    assert await sim.control("devices", {"phone": A}) == []
