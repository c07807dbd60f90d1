"""whatsapp-web.js 1.34.x from npm, unmodified, against the simulator as https://web.whatsapp.com/.

The independent check of the simulator: the most used driver of real WhatsApp Web links by QR
(the simulated phone scans the payload it emits), reaches `ready`, sends, receives, and reads a
LID sender's number, on a LID-migrated account.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.wwebjs.harness import bot, chromium_args, ensure_node, ensure_wwebjs, make_tls
from wasupd.sim import SimServer

BOT, BOB, CAROL = "15550001111", "15550002222", "15550003333"

pytestmark = [pytest.mark.chromium, pytest.mark.timeout(600)]  # a first run installs from npm


async def test_wwebjs_links_sends_receives_and_resolves_lids(tmp_path: Path) -> None:
    """Linked by QR through the control API, whatsapp-web.js reaches ready, cannot send to a
    number whose LID it has not learnt, resolves it with getContactLidAndPhone, sends (Bob's
    phone gets it), receives a text from Carol's LID and reads Carol's number."""
    node, npm = ensure_node()
    modules = ensure_wwebjs(npm)
    tls = make_tls(tmp_path)
    async with SimServer(time_factor=0.05, page_weight_mib=0, ssl_context=tls.context) as sim:
        for phone, name in ((BOT, "Bot"), (BOB, "Bob"), (CAROL, "Carol")):
            await sim.control("add_account", {"phone": phone, "name": name})
        lid = {p: (await sim.control("account", {"phone": p}))["lid"] for p in (BOT, BOB, CAROL)}
        args = chromium_args(sim.port, tls)
        async with bot(node, modules, args, tmp_path / "profile") as b:
            qr = (await b.event("qr", timeout=90))["qr"]
            if qr.startswith("undefined,"):  # read before the first ref came; the next one has it
                qr = (await b.event("qr", timeout=30))["qr"]
            assert len(qr.split(",")) == 5 and "[object Promise]" not in qr, qr
            assert qr.startswith("2@"), qr
            await sim.control("scan", {"payload": qr, "phone": BOT})
            await b.event("authenticated")
            assert (await b.event("ready", timeout=60))["wid"] == f"{BOT}@c.us"

            refused = await b.request("send", to=f"{BOB}@c.us", text="too early")
            assert "No LID for user" in refused.get("error", ""), refused
            [bob] = await b.call("lidAndPhone", ids=[f"{BOB}@c.us"])
            assert bob == {"lid": lid[BOB], "pn": f"{BOB}@c.us"}
            sent = await b.call("send", to=f"{BOB}@c.us", text="hello from whatsapp-web.js")
            assert (sent["from"], sent["to"]) == (lid[BOT], lid[BOB])  # the LID chat
            [got] = await sim.control("wait_received", {"phone": BOB, "timeout": 20})
            assert (got["from"], got["body"]) == (f"{BOT}@c.us", "hello from whatsapp-web.js")

            await sim.control("inject", {"to": BOT, "from": lid[CAROL], "text": "hi bot"})
            msg = await b.event("message", timeout=20)
            assert (msg["from"], msg["remote"], msg["body"]) == (lid[CAROL], lid[CAROL], "hi bot")
            [carol] = await b.call("lidAndPhone", ids=[lid[CAROL]])
            assert carol == {"lid": lid[CAROL], "pn": f"{CAROL}@c.us"}
