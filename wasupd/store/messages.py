"""Outbox, inbox, contacts and webhook deliveries in SQLite."""

from __future__ import annotations

import secrets
import time
from typing import Any

import aiosqlite

from wasupd.errors import MessageNotFound
from wasupd.store.db import Database

# Outbox states, in the order a message moves through them.
QUEUED, SENDING, SENT, DELIVERED, READ, FAILED, CANCELLED = (
    "queued",
    "sending",
    "sent",
    "delivered",
    "read",
    "failed",
    "cancelled",
)
ACK_STATE = {1: SENT, 2: DELIVERED, 3: READ, 4: READ}
_RANK = {QUEUED: 0, SENDING: 1, SENT: 2, DELIVERED: 3, READ: 4}


def new_message_id() -> str:
    """Sortable by creation time, unique: `m` + ms timestamp (hex) + random."""
    return f"m{int(time.time() * 1000):011x}{secrets.token_hex(4)}"


def _row(r: aiosqlite.Row | None) -> dict[str, Any]:
    if r is None:
        raise MessageNotFound("no such message (see `wasupctl outbox`)")
    return dict(r)


class MessageRepo:
    """Typed access to the message tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- outbox ----------------------------------------------------------------------------

    async def enqueue_many(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Insert messages in ONE transaction (group commit); a repeated idempotency key returns
        the first message instead of inserting a second."""
        out = []
        now = time.time()
        async with self.db.transaction() as conn:
            for it in items:
                key = it.get("idempotency_key")
                if key:
                    async with conn.execute(
                        "SELECT * FROM outbox WHERE idempotency_key = ?", (key,)
                    ) as cur:
                        found = await cur.fetchone()
                    if found is not None:
                        out.append(dict(found))
                        continue
                mid = new_message_id()
                await conn.execute(
                    "INSERT INTO outbox (id, session, from_spec, chat_id, body, idempotency_key, state,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                    (mid, it["session"], it["from_spec"], it["chat_id"], it["body"], key, now, now),
                )
                async with conn.execute("SELECT * FROM outbox WHERE id = ?", (mid,)) as cur:
                    out.append(dict(await cur.fetchone()))  # type: ignore[arg-type]
        return out

    async def get(self, mid: str) -> dict[str, Any]:
        """One outbox message."""
        return _row(await self.db.fetchone("SELECT * FROM outbox WHERE id = ?", (mid,)))

    async def outbox(
        self, *, session: str | None, state: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Latest messages first."""
        sql, args = "SELECT * FROM outbox WHERE 1=1", list[Any]()
        if session:
            sql += " AND (session = ? OR (session IS NULL AND from_spec = ?))"
            args += [session, session]
        if state:
            sql += " AND state = ?"
            args.append(state)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        args.append(limit)
        return [dict(r) for r in await self.db.fetchall(sql, tuple(args))]

    async def next_for(self, session: str, now: float) -> dict[str, Any] | None:
        """The oldest message this session should handle now: its own (sending first, for
        recovery), then unassigned pool messages."""
        r = await self.db.fetchone(
            "SELECT * FROM outbox WHERE ((session = ? AND state IN ('queued', 'sending'))"
            " OR (session IS NULL AND state = 'queued' AND from_spec = 'auto'))"
            " AND not_before <= ? ORDER BY state = 'sending' DESC, created_at, id LIMIT 1",
            (session, now),
        )
        return dict(r) if r else None

    async def update(self, mid: str, **fields: Any) -> None:
        """Set columns of one message (updated_at is set too)."""
        fields["updated_at"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in fields)
        await self.db.execute(f"UPDATE outbox SET {cols} WHERE id = ?", (*fields.values(), mid))  # noqa: S608

    async def take(self, mid: str, session: str) -> bool:
        """Atomically assign a pool message to `session`; False if another session took it."""
        return (
            await self.db.execute(
                "UPDATE outbox SET session = ?, updated_at = ? WHERE id = ?"
                " AND (session IS NULL OR session = ?) AND state IN ('queued', 'sending')",
                (session, time.time(), mid, session),
            )
            == 1
        )

    async def claim(self, mid: str, session: str, wa_id: str) -> None:
        """Record the page's message id BEFORE sending: the key to exactly-once after a crash."""
        await self.update(mid, session=session, wa_id=wa_id, state=SENDING)

    async def ack(self, wa_id: str, ack: int) -> dict[str, Any] | None:
        """Move a message forward on an ack (never backwards); the message if it changed."""
        state = ACK_STATE.get(ack)
        row = await self.db.fetchone("SELECT * FROM outbox WHERE wa_id = ?", (wa_id,))
        if row is None or state is None or _RANK.get(row["state"], 9) >= _RANK[state]:
            return None
        now = time.time()
        extra = {SENT: "sent_at", DELIVERED: "delivered_at", READ: "read_at"}[state]
        await self.update(row["id"], state=state, **{extra: now})
        return await self.get(row["id"])

    async def cancel(self, mid: str) -> bool:
        """Cancel a queued message; False when it is no longer queued."""
        return (
            await self.db.execute(
                "UPDATE outbox SET state = 'cancelled', updated_at = ? WHERE id = ? AND state = 'queued'",
                (time.time(), mid),
            )
            == 1
        )

    async def release_to_pool(self, session: str) -> int:
        """Hand a dropped session's queued `auto` messages back to the pool."""
        return await self.db.execute(
            "UPDATE outbox SET session = NULL, updated_at = ? WHERE session = ? AND state = 'queued'"
            " AND from_spec = 'auto'",
            (time.time(), session),
        )

    async def sent_times(self, session: str, since: float) -> list[float]:
        """When this session sent messages since `since` (pacing counts from the store)."""
        rows = await self.db.fetchall(
            "SELECT sent_at FROM outbox WHERE session = ? AND sent_at >= ? ORDER BY sent_at",
            (session, since),
        )
        return [float(r[0]) for r in rows]

    async def counts(self) -> dict[str, int]:
        """Messages by state."""
        rows = await self.db.fetchall("SELECT state, COUNT(*) FROM outbox GROUP BY state")
        return {r[0]: int(r[1]) for r in rows}

    # -- inbox and contacts ----------------------------------------------------------------

    async def store_inbound(self, session: str, m: dict[str, Any]) -> dict[str, Any] | None:
        """Store an inbound message (once per session and id); the row, None if a duplicate."""
        now = time.time()
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "INSERT OR IGNORE INTO inbox (session, wa_id, chat_id, sender, body, type, t, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session,
                    m.get("wa_id") or m.get("id"),
                    m.get("chat_id", ""),
                    m.get("sender", ""),
                    m.get("body", ""),
                    m.get("type") or "chat",
                    float(m.get("t") or now),
                    now,
                ),
            )
            if cur.rowcount != 1:
                return None
            await conn.execute(
                "INSERT INTO contacts (chat_id, session, last_at) VALUES (?, ?, ?)"
                " ON CONFLICT(chat_id, session) DO UPDATE SET last_at = excluded.last_at",
                (m.get("chat_id", ""), session, now),
            )
            async with conn.execute("SELECT * FROM inbox WHERE id = last_insert_rowid()") as c2:
                return dict(await c2.fetchone())  # type: ignore[arg-type]

    async def inbox(
        self, *, session: str | None, limit: int, after_id: int | None
    ) -> list[dict[str, Any]]:
        """Received messages, oldest first (the latest `limit`, or those after `after_id`)."""
        sql, args = "SELECT * FROM inbox WHERE 1=1", list[Any]()
        if session:
            sql += " AND session = ?"
            args.append(session)
        if after_id is not None:
            sql += " AND id > ? ORDER BY id LIMIT ?"
            args += [after_id, limit]
            return [dict(r) for r in await self.db.fetchall(sql, tuple(args))]
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [dict(r) for r in reversed(await self.db.fetchall(sql, tuple(args)))]

    async def last_session_for(self, chat_id: str) -> str | None:
        """The session this contact last talked to."""
        r = await self.db.fetchone(
            "SELECT session FROM contacts WHERE chat_id = ? ORDER BY last_at DESC LIMIT 1",
            (chat_id,),
        )
        return str(r[0]) if r else None

    async def touch_contact(self, chat_id: str, session: str) -> None:
        """Remember that `session` talked to `chat_id` now."""
        await self.db.execute(
            "INSERT INTO contacts (chat_id, session, last_at) VALUES (?, ?, ?)"
            " ON CONFLICT(chat_id, session) DO UPDATE SET last_at = excluded.last_at",
            (chat_id, session, time.time()),
        )
