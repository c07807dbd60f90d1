"""Messages between simulated accounts: acks, inbound events, groups, not-on-WhatsApp,
repeats, restore after a restart and offline delivery."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.sim import (
    SOCKET,
    browser_on,
    ev,
    goto,
    link,
    new_page,
    recorded,
    screenshot,
    send,
    until,
)
from tests.sim.conftest import A, B, C
from wasupd.sim import SimServer

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.chromium]
RESULT = "window.__results && window.__results[{id!r}]"


async def test_send_receive_between_two_browsers_with_acks(
    sim: SimServer, page: Any, browser: Any, tmp_path: Path
) -> None:
    """A message from A's browser arrives in B's as Msg add (isNewMsg, not fromMe); A sees
    change:ack 1 -> 2 -> 3 and the send result OK; the phone's record is the judge."""
    other = await new_page(browser)
    try:
        await link(sim, page, A)
        await link(sim, other, B)
        sent = await send(page, f"{B}@c.us", "hello Bob ✓")
        assert re.fullmatch(rf"true_{B}@c\.us_3EB0[0-9A-F]{{16}}", sent["key"])
        assert await until(page, RESULT.format(id=sent["id"])) == "OK"
        await until(page, "window.__rec.some(([k, v]) => k === 'ack' && v[1] === 3)")
        acks = [a for mid, a in await recorded(page, "ack") if mid == sent["id"]]
        assert acks == [1, 2, 3]

        got = await until(
            other,
            "window.__rec.filter(([k, v]) => k === 'add' && !v.id.fromMe).map(([, v]) => v)[0]",
        )
        assert (
            got["isNewMsg"] is True
            and got["body"] == "hello Bob ✓"
            and got["id"]["id"] == sent["id"]
        )
        assert (
            got["from"] == f"{A}@c.us"
            and got["id"]["_serialized"] == f"false_{A}@c.us_{sent['id']}"
        )
        [record] = await sim.control("received", {"phone": B})
        assert (record["id"], record["from"], record["body"], record["dup"]) == (
            sent["id"], f"{A}@c.us", "hello Bob ✓", False,
        )  # fmt: skip
        assert [m["ack"] for m in await sim.control("sent", {"phone": A})] == [3]

        reply = await sim.control("inject", {"to": A, "from": C, "text": "Carol here"})
        # A phone's id: over 21 characters reads as android (docs/whatsapp-web.md §4a).
        assert re.fullmatch("[0-9A-F]{32}", reply)
        await until(
            page,
            f"window.__rec.some(([k, v]) => k === 'add' && v.id.id === {reply!r} && v.isNewMsg)",
        )
        await page.setViewport({"width": 1280, "height": 800})
        await screenshot(page, tmp_path / "sim-main.png")
    finally:
        await other.target.browserContext.close()


async def test_read_receipts_are_optional_and_sendseen_reads(
    sim: SimServer, page: Any, browser: Any
) -> None:
    """With automatic reading off, acks stop at 2 until the recipient's page calls sendSeen."""
    await sim.control("configure", {"auto_read": False})
    other = await new_page(browser)
    try:
        await link(sim, page, A)
        await link(sim, other, B)
        sent = await send(page, f"{B}@c.us", "read me")
        await until(
            page,
            f"window.__rec.some(([k, v]) => k === 'ack' && v[0] === {sent['id']!r} && v[1] === 2)",
        )
        await until(other, f"window.require('WAWebCollections').Chat.get('{A}@c.us')")
        await ev(
            other,
            f"() => window.require('WAWebUpdateUnreadChatAction').sendSeen({{ chat: window.require('WAWebCollections').Chat.get('{A}@c.us') }})",
        )
        await until(
            page,
            f"window.__rec.some(([k, v]) => k === 'ack' && v[0] === {sent['id']!r} && v[1] === 3)",
        )
    finally:
        await other.target.browserContext.close()


async def test_group_messages_carry_author_and_reach_every_member(
    sim: SimServer, page: Any, browser: Any
) -> None:
    """A group `@g.us` is a chat of its members; a message to it reaches every other member's
    phone and arrives with from = group, author = sender, key with participant."""
    group = await sim.control(
        "add_group", {"group_id": "120363012345678901", "members": [A, B, C], "name": "Team"}
    )
    other = await new_page(browser)
    try:
        await link(sim, page, A)
        await link(sim, other, B)
        assert (
            await ev(page, f"() => window.require('WAWebCollections').Chat.get({group!r}).name")
            == "Team"
        )
        sent = await send(page, group, "hi team")
        assert sent["key"] == f"true_{group}_{sent['id']}_{A}@c.us"
        got = await until(
            other,
            "window.__rec.filter(([k, v]) => k === 'add' && !v.id.fromMe).map(([, v]) => v)[0]",
        )
        assert (got["from"], got["author"], got["id"]["participant"]) == (
            group,
            f"{A}@c.us",
            f"{A}@c.us",
        )
        for phone in (B, C):
            assert [
                (m["chat"], m["body"]) for m in await sim.control("received", {"phone": phone})
            ] == [(group, "hi team")]
        assert await sim.control("received", {"phone": A}) == []
    finally:
        await other.target.browserContext.close()


async def test_numbers_not_on_whatsapp_fail_like_the_real_page(sim: SimServer, page: Any) -> None:
    """queryWidExists answers null for an unknown number and {wid} for a known one;
    findOrCreateLatestChat rejects with "No LID for user" (what WhatsApp Web 2.3000 throws)."""
    await link(sim, page, A)
    exists = """(n) => window.require('WAWebQueryExistsJob').queryWidExists(window.require('WAWebWidFactory').createWid(n))
      .then((r) => r && r.wid._serialized)"""
    assert await ev(page, exists, "15559990000@c.us") is None
    assert await ev(page, exists, f"{B}@c.us") == f"{B}@c.us"
    err = await ev(
        page,
        "(n) => window.require('WAWebFindChatAction').findOrCreateLatestChat(n).then(() => 'ok', (e) => e.message)",
        "15559990000@c.us",
    )
    assert err == "No LID for user"
    with pytest.raises(ValueError, match="reaches no simulated account"):
        await sim.control("inject", {"to": "15559990000", "from": B, "text": "x"})


async def test_a_repeated_id_is_recorded_never_deduplicated_silently(
    sim: SimServer, page: Any, browser: Any
) -> None:
    """Sending an id this device already sent: Msg.get finds the first, the recipient's phone
    record lists both (the repeat marked dup), its page shows one message."""
    other = await new_page(browser)
    try:
        await link(sim, page, A)
        await link(sim, other, B)
        first = await send(page, f"{B}@c.us", "once")
        await until(page, RESULT.format(id=first["id"]))
        assert await ev(
            page, f"() => !!window.require('WAWebCollections').Msg.get({first['key']!r})"
        )
        await send(page, f"{B}@c.us", "once", first["id"])
        received = await sim.control("wait_received", {"phone": B, "count": 2, "timeout": 10})
        assert [(m["id"], m["dup"]) for m in received] == [
            (first["id"], False),
            (first["id"], True),
        ]
        assert len([v for v in await recorded(other, "add") if not v["id"]["fromMe"]]) == 1
    finally:
        await other.target.browserContext.close()


async def test_restart_finds_sent_messages_and_gets_offline_ones_as_new(
    sim: SimServer, tmp_path: Path
) -> None:
    """After a browser restart on the same profile, Msg.get finds what this device sent, and
    messages that arrived meanwhile come as Msg add with isNewMsg, before hasSynced."""
    profile = tmp_path / "a"
    async with browser_on(profile) as browser:
        page = await new_page(browser, incognito=False)
        await link(sim, page, A)
        sent = await send(page, f"{B}@c.us", "before restart")
        await until(page, RESULT.format(id=sent["id"]))
    offline = [
        await sim.control("inject", {"to": A, "from": B, "text": f"while away {i}"})
        for i in range(2)
    ]
    async with browser_on(profile) as browser:
        page = await new_page(browser, incognito=False)
        await goto(page, sim.url)
        await until(page, f"{SOCKET}.hasSynced")
        assert await ev(
            page, f"() => !!window.require('WAWebCollections').Msg.get({sent['key']!r})"
        )
        rec = await ev(page, "() => window.__rec")
        new = [v["id"]["id"] for k, v, _ in rec if k == "add" and v["isNewMsg"]]
        assert new == offline
        order = [
            k for k, v, _ in rec if k in ("hasSynced", "add") and (k != "add" or v["isNewMsg"])
        ]
        assert order == ["add", "add", "hasSynced"]
        history = [v for k, v, _ in rec if k == "add" and not v["isNewMsg"]]
        assert [v["body"] for v in history] == ["before restart"]
