"""Contacts in the store: one person under a number and a LID, merged when the mapping is
learnt, per-session statistics, inbox rows completed, stickiness across both ids, migration."""

from __future__ import annotations

from tests.helpers.postgres import StoreTarget
from wasupd.addressing import Peer
from wasupd.store.db import MIGRATIONS
from wasupd.store.messages import MessageRepo, NewMessage

PN, LID = "15550001111@c.us", "201234567890123@lid"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def inbound(wa_id: str, chat: str, **ids: str | None) -> dict[str, object]:
    return {
        "wa_id": wa_id,
        "id": wa_id,
        "chat_id": chat,
        "sender": chat,
        "body": "hi",
        "t": 1,
        **ids,
    }


async def test_a_lid_message_with_the_number_makes_one_contact(store_target: StoreTarget) -> None:
    """The inbox row carries both ids; the contact counts the message for its session."""
    async with await store_target.open() as db:
        repo = MessageRepo(db, Clock())
        row = await repo.store_inbound("b", inbound("m1", LID, sender_pn=PN, push_name="Ann"))
        assert row is not None and (row["sender_pn"], row["sender_lid"]) == (PN, LID)
        [c] = await repo.contacts.list(session=None, limit=10)
        assert (c["pn"], c["lid"], c["push_name"], c["session"]) == (PN, LID, "Ann", "b")
        assert (c["msgs_in"], c["msgs_out"]) == (1, 0)
        assert await repo.store_inbound("b", inbound("m1", LID, sender_pn=PN)) is None  # once


async def test_learning_the_mapping_later_merges_and_completes(store_target: StoreTarget) -> None:
    """A number sent to from `a` and a hidden LID that wrote to `b` become one contact once a
    message shows both: statistics added up, the earlier inbox row gets the number, and
    stickiness finds the latest session by either id."""
    async with await store_target.open() as db:
        repo = MessageRepo(db, Clock())
        [(msg, _)] = await repo.enqueue_many(
            [NewMessage(session="a", from_spec="a", chat_id=PN, body="x")]
        )
        await repo.mark_sent(msg.id, "a", PN, Peer.of(PN))
        first = await repo.store_inbound("b", inbound("m1", LID))
        assert first is not None and first["sender_pn"] is None  # the number is not known yet
        assert len(await repo.contacts.list(session=None, limit=10)) == 2
        assert await repo.last_session_for(PN) == "a"
        await repo.store_inbound("b", inbound("m2", LID, sender_pn=PN))
        rows = await repo.contacts.list(session=None, limit=10)
        assert {(r["pn"], r["lid"], r["session"], r["msgs_in"], r["msgs_out"]) for r in rows} == {
            (PN, LID, "a", 0, 1),
            (PN, LID, "b", 2, 0),
        }
        assert [
            r["sender_pn"] for r in await repo.inbox(session=None, limit=10, after_id=None)
        ] == [PN, PN]
        assert await repo.last_session_for(PN) == "b" and await repo.last_session_for(LID) == "b"
        assert await repo.contacts.ids_of(PN) == (PN, LID)
        assert [r["session"] for r in await repo.contacts.list(session="a", limit=10)] == ["a"]


async def test_a_send_resolved_to_a_lid_counts_for_the_person(store_target: StoreTarget) -> None:
    """A send to a number the page resolved to a LID links the two for a later LID message."""
    async with await store_target.open() as db:
        repo = MessageRepo(db, Clock())
        [(msg, _)] = await repo.enqueue_many(
            [NewMessage(session="a", from_spec="a", chat_id=PN, body="x")]
        )
        await repo.mark_sent(msg.id, "a", PN, Peer(PN, LID))
        assert await repo.last_session_for(LID) == "a"
        row = await repo.store_inbound("a", inbound("m1", LID))  # the page did not say the number
        assert row is not None and row["sender_pn"] == PN  # the store knew it


async def test_schema_3_contacts_are_migrated(store_target: StoreTarget) -> None:
    """Reply-stickiness rows of schema 3 become contacts with their session; inbox senders that
    were numbers get `sender_pn`."""
    async with await store_target.open(MIGRATIONS[:3]) as old:
        await old.execute("INSERT INTO contacts VALUES (?, 'a', 50), ('1@g.us', 'a', 60)", (PN,))
        await old.execute(
            "INSERT INTO inbox (session, wa_id, chat_id, sender, body, t, received_at)"
            " VALUES ('a', 'w', ?, ?, 'b', 1, 1)",
            (PN, PN),
        )
    async with await store_target.open() as db:
        repo = MessageRepo(db)
        [c] = await repo.contacts.list(session=None, limit=10)
        assert (c["pn"], c["lid"], c["session"], c["last_at"]) == (PN, None, "a", 50)
        [row] = await repo.inbox(session=None, limit=10, after_id=None)
        assert row["sender_pn"] == PN
        assert await repo.last_session_for("1@g.us") is None  # groups are not people
