"""Contacts: one row per person (a phone number id and/or a LID), with per-session statistics.

WhatsApp Web names a migrated person by LID and gives the number only when it knows it (never
for a contact who hides it), so the same person can reach us first by LID and later by number,
or the reverse. `learn` keeps one row per person: when a message or a lookup shows a number and
a LID together, the rows found under each are merged (their session statistics added up), and
inbox rows that named the sender by one id get the other. `ids_of` gives every id of a person,
which is what reply stickiness and the pool look up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wasupd.addressing import Peer
from wasupd.store.db import Database, Executor, Transaction


@dataclass(frozen=True, slots=True)
class Contact:
    """One person: its row id and what is known of it."""

    id: int
    pn: str | None
    lid: str | None
    push_name: str

    @property
    def peer(self) -> Peer:
        """Its ids."""
        return Peer(self.pn, self.lid)


async def _find(conn: Executor, column: str, value: str | None) -> Contact | None:
    if not value:
        return None
    # `column` is one of the two constants below, never data.
    sql = f"SELECT id, pn, lid, push_name FROM contacts WHERE {column} = ?"  # noqa: S608
    r = await conn.fetchone(sql, (value,))
    return Contact(int(r[0]), r[1], r[2], str(r[3])) if r else None


def _least(column: str) -> str:
    """The smaller of the stored and the new value, in the form both engines accept (SQLite's
    two-argument MIN is LEAST in PostgreSQL, which SQLite lacks)."""
    old, new = f"contact_sessions.{column}", f"excluded.{column}"
    return f"CASE WHEN {new} < {old} THEN {new} ELSE {old} END"


def _greatest(column: str) -> str:
    """The larger of the stored and the new value (see `_least`)."""
    old, new = f"contact_sessions.{column}", f"excluded.{column}"
    return f"CASE WHEN {new} > {old} THEN {new} ELSE {old} END"


# Only the constant expressions of `_least` and `_greatest` are formatted in.
_MOVE_STATS = (
    "INSERT INTO contact_sessions (contact_id, session, first_at, last_at, msgs_in, msgs_out)"  # noqa: S608
    " SELECT ?, session, first_at, last_at, msgs_in, msgs_out FROM contact_sessions"
    " WHERE contact_id = ? AND true ON CONFLICT(contact_id, session) DO UPDATE SET"
    f" first_at = {_least('first_at')}, last_at = {_greatest('last_at')},"
    " msgs_in = contact_sessions.msgs_in + excluded.msgs_in,"
    " msgs_out = contact_sessions.msgs_out + excluded.msgs_out"
)


async def learn(
    conn: Transaction, peer: Peer, *, push_name: str = "", now: float
) -> Contact | None:
    """Record what `peer` says about a person inside the caller's transaction: a new contact,
    a missing id or push name added, or two contacts merged into the older one. The contact
    (None when `peer` names nobody)."""
    if not peer.known:
        return None
    # Read-then-write of the person's rows: learners that share an id of theirs run one at
    # a time, on every host (a merge holds both ids, so it is alone with each).
    await conn.lock(*(f"contacts:{i}" for i in (peer.pn, peer.lid) if i))
    by_pn, by_lid = await _find(conn, "pn", peer.pn), await _find(conn, "lid", peer.lid)
    if by_pn is None and by_lid is None:
        row = await conn.fetchone(
            "INSERT INTO contacts (pn, lid, push_name, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?) RETURNING id",
            (peer.pn, peer.lid, push_name, now, now),
        )
        assert row is not None  # RETURNING of an INSERT that succeeded
        return Contact(int(row[0]), peer.pn, peer.lid, push_name)
    found = [c for c in (by_pn, by_lid) if c is not None]
    keep = min(found, key=lambda c: c.id)
    for other in found:
        if other.id != keep.id:  # the same person under each id: one contact from now on
            await conn.execute(_MOVE_STATS, (keep.id, other.id))
            await conn.execute("DELETE FROM contacts WHERE id = ?", (other.id,))
    pn = peer.pn or next((c.pn for c in found if c.pn), None)
    lid = peer.lid or next((c.lid for c in found if c.lid), None)
    name = push_name or next((c.push_name for c in found if c.push_name), "")
    await conn.execute(
        "UPDATE contacts SET pn = ?, lid = ?, push_name = ?, updated_at = ? WHERE id = ?",
        (pn, lid, name, now, keep.id),
    )
    if pn and lid:  # inbox rows that knew only one of them
        await conn.execute(
            "UPDATE inbox SET sender_pn = ? WHERE sender_lid = ? AND sender_pn IS NULL", (pn, lid)
        )
        await conn.execute(
            "UPDATE inbox SET sender_lid = ? WHERE sender_pn = ? AND sender_lid IS NULL", (lid, pn)
        )
    return Contact(keep.id, pn, lid, name)


async def interaction(
    conn: Executor, contact: Contact, session: str, now: float, *, inbound: bool
) -> None:
    """Count one message in or out between `contact` and `session` at `now`."""
    await conn.execute(
        "INSERT INTO contact_sessions (contact_id, session, first_at, last_at, msgs_in, msgs_out)"  # noqa: S608
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(contact_id, session) DO UPDATE SET"
        f" last_at = {_greatest('last_at')},"
        " msgs_in = contact_sessions.msgs_in + excluded.msgs_in,"
        " msgs_out = contact_sessions.msgs_out + excluded.msgs_out",
        (contact.id, session, now, now, int(inbound), int(not inbound)),
    )


class ContactRepo:
    """Typed access to the contacts and their per-session statistics."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    async def learn(self, peer: Peer, push_name: str = "") -> Contact | None:
        """`learn` in its own transaction (a mapping seen outside a stored message)."""
        if not peer.known:
            return None
        async with self.db.transaction() as conn:
            return await learn(conn, peer, push_name=push_name, now=self.clock())

    async def ids_of(self, chat_id: str) -> tuple[str, ...]:
        """`chat_id` and the person's other id when a contact links them, `chat_id` first."""
        r = await self.db.fetchone(
            "SELECT pn, lid FROM contacts WHERE pn = ? OR lid = ?", (chat_id, chat_id)
        )
        others = [i for i in (r[0], r[1]) if i and i != chat_id] if r else []
        return (chat_id, *others)

    async def list(self, *, session: str | None, limit: int) -> list[dict[str, Any]]:
        """Contacts with their statistics, one row per contact and session, the most recent
        interaction first."""
        sql = (
            "SELECT c.id, c.pn, c.lid, c.push_name, s.session, s.first_at, s.last_at,"
            " s.msgs_in, s.msgs_out FROM contacts AS c"
            " JOIN contact_sessions AS s ON s.contact_id = c.id"
        )
        args: list[Any] = []
        if session:
            sql += " WHERE s.session = ?"
            args.append(session)
        sql += " ORDER BY s.last_at DESC, c.id LIMIT ?"
        args.append(limit)
        return [dict(r) for r in await self.db.fetchall(sql, tuple(args))]
