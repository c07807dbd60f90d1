"""LID addressing (docs/simulator.md, "LIDs"): migrated accounts' pages name contacts by LID,
learn LID <-> number pairs from what they are shown, and cannot open a chat by a number whose
LID they have not learnt; LID-mode groups; hidden numbers; the old world next to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.helpers.sim import ev, link, until
from tests.sim.conftest import TIME_FACTOR, A, B, C
from wasupd.sim import SimServer

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.chromium]
D = "15550004444"  # an old-world account

API = "window.require('WAWebApiContact')"
WID = "window.require('WAWebWidFactory').createWid"
INBOUND = "window.__rec.filter(([k, v]) => k === 'add' && !v.id.fromMe).map(([, v]) => v)"

SEND_BY_NUMBER = """async (to, body) => {
  const R = window.require, wid = R('WAWebWidFactory').createWid(to);
  const before = await R('WAWebFindChatAction').findOrCreateLatestChat(wid).then(() => 'opened', (e) => e.message);
  const found = await R('WAWebQueryExistsJob').queryWidExists(wid);
  const { chat } = await R('WAWebFindChatAction').findOrCreateLatestChat(wid);
  const from = chat.id.isLid() ? R('WAWebUserPrefsMeUser').getMaybeMeLidUser() : R('WAWebUserPrefsMeUser').getMaybeMePnUser();
  const MsgKey = R('WAWebMsgKey'), id = await MsgKey.newId();
  const key = new MsgKey({ from, to: chat.id, id, selfDir: 'out' });
  const [added, result] = R('WAWebSendMsgChatAction').addAndSendMsgToChat(chat, { id: key, body, from, to: chat.id, type: 'chat' });
  await added;
  return { before, lid: String(found.lid), chat: String(chat.id), from: String(from), result: await result };
}"""


@pytest_asyncio.fixture(loop_scope="module")
async def lid_sim() -> AsyncIterator[SimServer]:
    """A, B, C LID-migrated (the default), D in the old world."""
    async with SimServer(time_factor=TIME_FACTOR, page_weight_mib=0) as s:
        for phone in (A, B, C):
            await s.control("add_account", {"phone": phone})
        await s.control("add_account", {"phone": D, "lid": False})
        yield s


async def lid(sim: SimServer, phone: str) -> str:
    """The account's `<lid>@lid`."""
    return str((await sim.control("account", {"phone": phone}))["lid"])


async def test_inbound_from_lid_and_what_the_page_learns(lid_sim: SimServer, page: Any) -> None:
    """On a migrated page a message from B comes from B's LID (from and id.remote), the page
    then knows B's number; C hides its number, so C's LID maps to nothing; A's own LID is
    getMaybeMeLidUser."""
    await lid_sim.control("hide_number", {"phone": C})
    await link(lid_sim, page, A)
    await lid_sim.control("inject", {"to": A, "from": B, "text": "from B"})
    await lid_sim.control(
        "inject", {"to": await lid(lid_sim, A), "from": await lid(lid_sim, C), "text": "from C"}
    )
    got = await until(page, f"{INBOUND}.length === 2 && {INBOUND}")
    assert [(m["from"], m["id"]["remote"], m["body"]) for m in got] == [
        (await lid(lid_sim, B), await lid(lid_sim, B), "from B"),
        (await lid(lid_sim, C), await lid(lid_sim, C), "from C"),
    ]
    known = await ev(
        page,
        f"""(b, c) => [{API}.getPhoneNumber({WID}(b)), {API}.getPhoneNumber({WID}(c)),
          window.require('WAWebUserPrefsMeUser').getMaybeMeLidUser()].map((w) => w ? String(w) : null)""",
        await lid(lid_sim, B),
        await lid(lid_sim, C),
    )
    assert known == [f"{B}@c.us", None, await lid(lid_sim, A)]
    [record] = (await lid_sim.control("received", {"phone": A}))[:1]
    assert record["from"] == f"{B}@c.us"  # the phone's record names numbers


async def test_send_by_number_needs_the_lid_first(lid_sim: SimServer, page: Any) -> None:
    """findOrCreateLatestChat(number) throws `No LID for user` until queryWidExists taught the
    page the LID; then it opens the LID chat, the message goes from A's LID and B gets it."""
    await link(lid_sim, page, A)
    out = await ev(page, SEND_BY_NUMBER, f"{B}@c.us", "hi B")
    b_lid, a_lid = await lid(lid_sim, B), await lid(lid_sim, A)
    assert out == {
        "before": "No LID for user",
        "lid": b_lid,
        "chat": b_lid,
        "from": a_lid,
        "result": "OK",
    }
    [got] = await lid_sim.control("wait_received", {"phone": B, "timeout": 10})
    assert (got["from"], got["body"]) == (f"{A}@c.us", "hi B")
    [sent] = await lid_sim.control("sent", {"phone": A})
    assert (sent["to"], sent["addressed"]) == (f"{B}@c.us", b_lid)


async def test_lid_mode_group_names_authors_by_lid(lid_sim: SimServer, page: Any) -> None:
    """In a LID-mode group a migrated page sees the author and the participants by LID, and
    learns their numbers; in a group without it, by number."""
    await lid_sim.control(
        "add_group", {"group_id": "120363000000000001", "members": [A, B], "lid_mode": True}
    )
    await lid_sim.control("add_group", {"group_id": "120363000000000002", "members": [A, B]})
    await link(lid_sim, page, A)
    for gid in ("120363000000000001@g.us", "120363000000000002@g.us"):
        await lid_sim.control("inject", {"to": gid, "from": B, "text": gid})
    got = await until(page, f"{INBOUND}.length === 2 && {INBOUND}")
    assert [m["author"] for m in got] == [await lid(lid_sim, B), f"{B}@c.us"]
    meta = await ev(
        page,
        """() => window.require('WAWebCollections').Chat.get('120363000000000001@g.us').groupMetadata.serialize()""",
    )
    assert meta["isLidAddressingMode"] is True
    assert sorted(p["id"]["_serialized"] for p in meta["participants"]) == sorted(
        [await lid(lid_sim, A), await lid(lid_sim, B)]
    )
    pn = await ev(page, f"(b) => String({API}.getPhoneNumber({WID}(b)))", await lid(lid_sim, B))
    assert pn == f"{B}@c.us"


async def test_old_world_page_sees_numbers_only(lid_sim: SimServer, page: Any) -> None:
    """An account registered with lid=false: messages come from numbers, there is no own LID
    and the page learns no LIDs, even from a query."""
    await link(lid_sim, page, D)
    await lid_sim.control("inject", {"to": D, "from": B, "text": "old world"})
    [got] = await until(page, f"{INBOUND}.length === 1 && {INBOUND}")
    assert (got["from"], got["id"]["remote"]) == (f"{B}@c.us", f"{B}@c.us")
    state = await ev(
        page,
        f"""async (b) => {{ const R = window.require; const q = await R('WAWebQueryExistsJob').queryWidExists({WID}(b));
          return [String(q.wid), q.lid ?? null, R('WAWebUserPrefsMeUser').getMaybeMeLidUser() ?? null,
            {API}.getCurrentLid({WID}(b)) ?? null]; }}""",
        f"{B}@c.us",
    )
    assert state == [f"{B}@c.us", None, None, None]


async def test_control_refuses_unknown_lids(lid_sim: SimServer) -> None:
    """A LID nobody has is refused with what to do; a number is not a LID."""
    with pytest.raises(ValueError, match="no simulated account's LID: read it with `account`"):
        await lid_sim.control("inject", {"to": A, "from": "299999999999999@lid", "text": "x"})
    with pytest.raises(ValueError, match="not a LID"):
        await lid_sim.control("account", {"phone": "12ab@lid"})
    assert (await lid_sim.control("account", {"phone": await lid(lid_sim, D)}))["migrated"] is False


async def test_an_old_world_contact_writes_to_a_migrated_account(
    lid_sim: SimServer, page: Any
) -> None:
    """A contact still in the old world (D) writing to a migrated account (A): A's page keys
    the chat by D's LID like every 1:1 chat and knows D's number; injecting as D leaves D in
    the old world (its own pages keep seeing numbers)."""
    await link(lid_sim, page, A)
    await lid_sim.control("inject", {"to": A, "from": D, "text": "from the old world"})
    got = await until(page, f"{INBOUND}.find((m) => m.body === 'from the old world')")
    assert got["from"] == got["id"]["remote"] == await lid(lid_sim, D)
    pn = await ev(page, f"(d) => String({API}.getPhoneNumber({WID}(d)))", await lid(lid_sim, D))
    assert pn == f"{D}@c.us"
    assert (await lid_sim.control("account", {"phone": D}))["migrated"] is False


async def test_inbound_messages_carry_the_senders_push_name(lid_sim: SimServer, page: Any) -> None:
    """`Msg.serialize().notifyName` is the sender's name, as WhatsApp Web shows it."""
    await lid_sim.control("add_account", {"phone": B, "name": "Bob"})
    await link(lid_sim, page, A)
    await lid_sim.control("inject", {"to": A, "from": B, "text": "named"})
    got = await until(
        page,
        "window.require('WAWebCollections').Msg.getModelsArray()"
        ".map((m) => m.serialize()).find((m) => m.body === 'named')",
    )
    assert got["notifyName"] == "Bob"


async def test_a_logged_out_page_gets_no_answer_rather_than_a_no(
    lid_sim: SimServer, page: Any
) -> None:
    """After a remote logout the page is no longer linked: `queryWidExists` rejects (no server
    answers it) instead of resolving null, which would read as "not on WhatsApp"."""
    await link(lid_sim, page, A)
    await lid_sim.control("logout", {"phone": A})
    await until(page, "window.require('WAWebSocketModel').Socket.state === 'UNPAIRED'")
    outcome = await ev(
        page,
        f"""(b) => window.require('WAWebQueryExistsJob').queryWidExists({WID}(b))
          .then((r) => 'answered ' + JSON.stringify(r), (e) => 'rejected: ' + e.message)""",
        f"{B}@c.us",
    )
    assert outcome.startswith("rejected"), outcome
