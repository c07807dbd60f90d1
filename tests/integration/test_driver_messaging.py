"""The driver's MessagePort with real Chromium against the simulator: numbers, sends, acks, inbound."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import pytest

from tests.helpers.waiting import eventually_async
from tests.integration.test_driver_linking import A, B, Rig, rig
from wasupd.addressing import parse_recipient
from wasupd.errors import InvalidArgument, NotOnWhatsApp


async def received(r: Rig, phone: str) -> list[dict[str, object]]:
    """What reached `phone` at the simulator."""
    return list(await r.sim.control("received", {"phone": phone}))


async def until_received(
    r: Rig, phone: str, count: int, timeout: float = 10.0
) -> list[dict[str, object]]:
    """Wait (bounded) until `phone` has at least `count` messages; them."""
    return await eventually_async(  # type: ignore[no-any-return]
        lambda: received(r, phone),
        timeout,
        f"{count} messages at {phone}",
        ok=lambda got: len(got) >= count,
        interval=0.005,
    )


def test_recipients_are_normalised() -> None:
    """Phone numbers accept +, spaces, dashes and parentheses; chat ids pass; the rest is refused."""
    assert parse_recipient("+1 (555) 000-2222") == f"{B}@c.us"
    assert parse_recipient(f"{B}@c.us") == f"{B}@c.us"
    assert parse_recipient("120363040000000000@g.us") == "120363040000000000@g.us"
    for bad in ("bob", "+12", "123@s.whatsapp.net", "@c.us", "1234567890123456"):
        with pytest.raises(InvalidArgument):
            parse_recipient(bad)


async def test_resolve_chat_checks_with_whatsapp(tmp_path: Path) -> None:
    """Registered numbers resolve to their chat id; an unknown number or group is NotOnWhatsApp
    with a message naming it."""
    async with rig(tmp_path) as r:
        await r.linked(A)
        async with asyncio.timeout(10):
            assert await r.driver.resolve_chat("+1 555 000 2222") == f"{B}@c.us"
            with pytest.raises(NotOnWhatsApp, match=r"\+15559990000 is not on WhatsApp"):
                await r.driver.resolve_chat("15559990000")
            with pytest.raises(NotOnWhatsApp, match="not a member of the group"):
                await r.driver.resolve_chat("120363040000000000@g.us")


async def test_send_text_arrives_exactly_with_acks(tmp_path: Path) -> None:
    """A text (UTF-8, emoji, newlines) arrives byte for byte under the id we chose; the page then
    knows it, and its acks 1 -> 2 -> 3 are reported for that id."""
    body = "grüße 👋🏽\nzweite Zeile\n\n  indented \u200b end"
    async with rig(tmp_path) as r:
        await r.linked(A)
        async with asyncio.timeout(10):
            chat = await r.driver.resolve_chat(B)
            mid = await r.driver.new_message_id()
            assert not await r.driver.message_exists(chat, mid)
            key = await r.driver.send_text(chat, body, message_id=mid)
            assert key == f"true_{chat}_{mid}"
            assert await r.driver.message_exists(chat, mid)
        got = await until_received(r, B, 1)
        assert got[0]["body"] == body and got[0]["id"] == mid
        await r.reports.wait(lambda: [a.data["ack"] for a in r.reports.of("ack")][-1:] == [3])
        acks = r.reports.of("ack")
        assert [a.data["ack"] for a in acks] == [1, 2, 3]
        assert {a.data["id"] for a in acks} == {mid}
        assert acks[0].data["wa_id"] == key and acks[0].data["chat_id"] == chat


async def test_message_ids_are_fresh(tmp_path: Path) -> None:
    """Ids come from the page's MsgKey.newId() (3EB0...) and never repeat, across batches."""
    async with rig(tmp_path) as r:
        await r.linked(A)
        async with asyncio.timeout(10):
            ids = [await r.driver.new_message_id() for _ in range(100)]
        assert len(set(ids)) == 100 and all(i.startswith("3EB0") for i in ids)


async def test_inbound_message_report(tmp_path: Path) -> None:
    """A message from another number is reported as "message" with the fields the inbox stores."""
    async with rig(tmp_path) as r:
        await r.linked(A)
        mid = await r.sim.control("inject", {"to": A, "from": B, "text": "hi ✓\nthere"})
        msg = await r.reports.first("message")
        assert msg.data == {
            "wa_id": f"false_{B}@c.us_{mid}",
            "id": mid,
            "chat_id": f"{B}@c.us",
            "sender": f"{B}@c.us",
            "sender_pn": f"{B}@c.us",
            "sender_lid": None,  # this simulator build has no LIDs
            "push_name": "",
            "body": "hi ✓\nthere",
            "type": "chat",
            "t": msg.data["t"],
            "from_me": False,
        }
        assert abs(msg.data["t"] - time.time()) < 60


async def test_send_latency_through_the_page(tmp_path: Path) -> None:
    """Sending through the page (resolve, id, send until the server took it) has a p50 well under
    50 ms: the driver is not what limits the daemon's send latency."""
    async with rig(tmp_path) as r:
        await r.linked(A)
        times = []
        async with asyncio.timeout(60):
            for i in range(60):
                t0 = time.perf_counter()
                chat = await r.driver.resolve_chat(B)
                await r.driver.send_text(chat, f"m{i}", message_id=await r.driver.new_message_id())
                times.append(time.perf_counter() - t0)
        p50 = statistics.median(times[10:]) * 1000
        print(f"driver send p50 {p50:.1f} ms, max {max(times) * 1000:.1f} ms")
        assert p50 < 25
        assert len(await until_received(r, B, 60)) == 60
