"""Outbox and inbox (contacts: `store/contacts.py`; webhook deliveries:
`store/webhooks.py`).

Every timestamp comes from the injected clock, so pacing (which counts sends from this store)
can be tested with a fake one.
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from wasupd.addressing import Peer
from wasupd.errors import MessageNotFound
from wasupd.store import contacts
from wasupd.store.db import Database, Executor, Row


class OutboxState(enum.StrEnum):
    """An outgoing message's state, in the order a message moves through them (stored, and
    shown by `message.get`, as the lower-case value)."""

    QUEUED = "queued"
    SENDING = "sending"  # the page's message id is stored: look it up before sending again
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    CANCELLED = "cancelled"


QUEUED, SENDING, SENT = OutboxState.QUEUED, OutboxState.SENDING, OutboxState.SENT
DELIVERED, READ = OutboxState.DELIVERED, OutboxState.READ
FAILED, CANCELLED = OutboxState.FAILED, OutboxState.CANCELLED
DONE = (SENT, DELIVERED, READ)
WAITING = (QUEUED, SENDING)  # not yet sent: a sender will take it


@dataclass(slots=True, kw_only=True)
class OutboxMessage:
    """One row of the outbox. `session` is None for a pool (`auto`) message not yet taken."""

    id: str
    session: str | None
    from_spec: str  # what the caller asked for: a session name or "auto"
    chat_id: str
    body: str
    idempotency_key: str | None
    state: OutboxState
    wa_id: str | None  # the page's message id, stored before the send (exactly once)
    attempts: int
    last_error: str
    not_before: float  # unix time before which no sender takes it (pacing, retries)
    wait_reason: str
    created_at: float
    updated_at: float
    sent_at: float | None
    delivered_at: float | None
    read_at: float | None
    # A file to send (the body is its caption): its hash in the media store, kind
    # (document, image, video, audio, voice, sticker), MIME type, size and file name.
    media_sha256: str | None = None
    media_kind: str | None = None
    media_mime: str | None = None
    media_size: int | None = None
    media_name: str | None = None

    @classmethod
    def from_row(cls, row: Row) -> OutboxMessage:
        """The message stored in `row` (a `SELECT *` of outbox)."""
        data = dict(row)
        return cls(**{**data, "state": OutboxState(data["state"])})

    def as_dict(self) -> dict[str, Any]:
        """The message as RPC answers and webhooks carry it (states as strings)."""
        return {**dataclasses.asdict(self), "state": self.state.value}


ACK_STATE = {1: SENT, 2: DELIVERED, 3: READ, 4: READ}
# An ack proves a message went out, even one given up on after a timeout: FAILED ranks lowest.
_RANK = {FAILED: -1, QUEUED: 0, SENDING: 1, SENT: 2, DELIVERED: 3, READ: 4}
_AT = {SENT: "sent_at", DELIVERED: "delivered_at", READ: "read_at"}


def _inbound_media(m: dict[str, Any]) -> tuple[Any, ...]:
    """The inbox's media columns for a page report (all NULL for a text)."""
    if not m.get("kind"):
        return (None, None, None, None, None)
    size = int(m["size"]) if m.get("size") is not None else None
    return (m["kind"], m.get("mimetype"), size, m.get("filename"), m.get("sha256"))


def _message(r: Row | None) -> OutboxMessage:
    if r is None:
        raise MessageNotFound("no such message (see `wasupctl outbox`)")
    return OutboxMessage.from_row(r)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMessage:
    """What `message.send` accepted, before the outbox gives it an id."""

    session: str | None  # None: a pool message no session is connected to take yet
    from_spec: str
    chat_id: str
    body: str
    idempotency_key: str | None = None
    wait_reason: str = ""
    media: MediaRef | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaRef:
    """The file of an outgoing message: in the media store by `sha256`."""

    sha256: str
    kind: str
    mime: str
    size: int
    name: str


# In a fleet: checks inside a transaction that this host still holds `session`'s lease
# (raises StaleLease otherwise, which rolls the transaction back). wasupd.fleet sets it.
Fence = Callable[[Executor, str], Awaitable[None]]


class MessageRepo:
    """Typed access to the outbox and inbox tables (and, in the same commits, the contacts).

    `fence`, when set (a fleet), is checked in the same transaction as every change a
    sender makes on behalf of a session (take, claim, mark sent): a host whose lease on that
    session is stale changes nothing."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        self.contacts = contacts.ContactRepo(db, clock)
        self.fence: Fence | None = None

    async def _fenced(self, session: str, sql: str, params: tuple[Any, ...]) -> int:
        """One statement for `session`, behind the fence when there is one."""
        if self.fence is None:
            return await self.db.execute(sql, params)
        async with self.db.transaction() as tx:
            await self.fence(tx, session)
            return await tx.execute(sql, params)

    def new_id(self) -> str:
        """Sortable by creation time, unique: `m` + ms timestamp (hex) + random."""
        return f"m{int(self.clock() * 1000):011x}{secrets.token_hex(4)}"

    # -- outbox: accepting -----------------------------------------------------------------

    async def enqueue_many(self, items: list[NewMessage]) -> list[tuple[OutboxMessage, bool]]:
        """Insert messages in ONE transaction (group commit); a repeated idempotency key (in
        the store or earlier in the batch) returns the first message instead of a second.
        Per item: (the message, True when it is that earlier one)."""
        now = self.clock()
        async with self.db.transaction() as conn:
            # Read-then-insert of idempotency keys: batches that share a key run one at a
            # time, on every host (a batch without keys needs no lock).
            keys = [it.idempotency_key for it in items]
            await conn.lock(*(f"outbox.key:{k}" for k in keys if k))
            known = await self._by_keys(conn, keys)
            out: list[tuple[OutboxMessage, bool]] = []
            fresh: list[OutboxMessage] = []
            for it in items:
                key = it.idempotency_key
                if key and key in known:
                    out.append((known[key], True))
                    continue
                msg = self._new_message(it, now)
                if key:
                    known[key] = msg
                fresh.append(msg)
                out.append((msg, False))
            if fresh:
                rows = [m.as_dict() for m in fresh]
                cols = list(rows[0])
                await conn.executemany(
                    f"INSERT INTO outbox ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",  # noqa: S608
                    [tuple(r.values()) for r in rows],
                )
        return out

    @staticmethod
    async def _by_keys(conn: Executor, keys: list[str | None]) -> dict[str, OutboxMessage]:
        wanted = sorted({k for k in keys if k})
        if not wanted:
            return {}
        marks = ", ".join("?" * len(wanted))
        sql = f"SELECT * FROM outbox WHERE idempotency_key IN ({marks})"  # noqa: S608
        rows = await conn.fetchall(sql, wanted)
        return {r["idempotency_key"]: OutboxMessage.from_row(r) for r in rows}

    def _new_message(self, it: NewMessage, now: float) -> OutboxMessage:
        return OutboxMessage(
            id=self.new_id(),
            session=it.session,
            from_spec=it.from_spec,
            chat_id=it.chat_id,
            body=it.body,
            idempotency_key=it.idempotency_key,
            state=QUEUED,
            wa_id=None,
            attempts=0,
            last_error="",
            not_before=0.0,
            wait_reason=it.wait_reason,
            created_at=now,
            updated_at=now,
            sent_at=None,
            delivered_at=None,
            read_at=None,
            media_sha256=it.media.sha256 if it.media else None,
            media_kind=it.media.kind if it.media else None,
            media_mime=it.media.mime if it.media else None,
            media_size=it.media.size if it.media else None,
            media_name=it.media.name if it.media else None,
        )

    # -- outbox: reading -------------------------------------------------------------------

    async def get(self, mid: str) -> OutboxMessage:
        """One outbox message; MessageNotFound if there is none with that id."""
        return _message(await self.db.fetchone("SELECT * FROM outbox WHERE id = ?", (mid,)))

    async def outbox(
        self, *, session: str | None, state: str | None, limit: int
    ) -> list[OutboxMessage]:
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
        return [OutboxMessage.from_row(r) for r in await self.db.fetchall(sql, tuple(args))]

    _MINE = (
        "((session = ? AND state IN ('queued', 'sending'))"
        " OR (session IS NULL AND state = 'queued' AND from_spec = 'auto'))"
    )

    async def next_for(self, session: str, now: float) -> OutboxMessage | None:
        """The oldest message this session should handle now: its own (`sending` first, for
        recovery), then unassigned pool messages."""
        r = await self.db.fetchone(
            f"SELECT * FROM outbox WHERE {self._MINE} AND not_before <= ?"  # noqa: S608
            " ORDER BY state = 'sending' DESC, created_at, id LIMIT 1",
            (session, now),
        )
        return OutboxMessage.from_row(r) if r else None

    async def next_due(self, session: str) -> float | None:
        """When this session's next held-back message becomes due (None: nothing waiting)."""
        r = await self.db.fetchone(
            f"SELECT MIN(not_before) FROM outbox WHERE {self._MINE}",  # noqa: S608
            (session,),
        )
        return float(r[0]) if r and r[0] is not None else None

    async def sent_times(self, session: str, since: float) -> list[float]:
        """When this session sent messages since `since`, sorted (pacing counts from the store)."""
        rows = await self.db.fetchall(
            "SELECT sent_at FROM outbox WHERE session = ? AND sent_at >= ? ORDER BY sent_at",
            (session, since),
        )
        return [float(r[0]) for r in rows]

    async def load(self, sessions: list[str], now: float) -> dict[str, tuple[int, int, int]]:
        """Per session: (sent in the last hour, sent in the last day, messages waiting)."""
        marks = ", ".join("?" * len(sessions))
        where = f"session IN ({marks}) AND (sent_at >= ? OR state IN ('queued', 'sending'))"
        rows = await self.db.fetchall(
            # COUNT(CASE ...): PostgreSQL does not add up booleans as SQLite does.
            "SELECT session, COUNT(CASE WHEN sent_at >= ? THEN 1 END),"  # noqa: S608
            " COUNT(CASE WHEN sent_at >= ? THEN 1 END),"
            " COUNT(CASE WHEN state IN ('queued', 'sending') THEN 1 END)"
            f" FROM outbox WHERE {where} GROUP BY session",
            (now - 3600, now - 86400, *sessions, now - 86400),
        )
        out = {name: (0, 0, 0) for name in sessions}
        for r in rows:
            out[r[0]] = (int(r[1] or 0), int(r[2] or 0), int(r[3] or 0))
        return out

    async def counts(self) -> dict[str, int]:
        """Messages by state."""
        rows = await self.db.fetchall("SELECT state, COUNT(*) FROM outbox GROUP BY state")
        return {r[0]: int(r[1]) for r in rows}

    # -- outbox: changing ------------------------------------------------------------------

    async def update(self, mid: str, **fields: Any) -> None:
        """Set columns of one message (updated_at is set too)."""
        fields["updated_at"] = self.clock()
        cols = ", ".join(f"{k} = ?" for k in fields)
        await self.db.execute(f"UPDATE outbox SET {cols} WHERE id = ?", (*fields.values(), mid))  # noqa: S608

    async def take(self, mid: str, session: str) -> bool:
        """Atomically assign a pool message to `session`; False if another session took it."""
        changed = await self._fenced(
            session,
            "UPDATE outbox SET session = ?, updated_at = ? WHERE id = ?"
            " AND (session IS NULL OR session = ?) AND state IN ('queued', 'sending')",
            (session, self.clock(), mid, session),
        )
        return changed == 1

    async def claim(self, mid: str, session: str, wa_id: str) -> bool:
        """Record the page's message id BEFORE sending: the key to exactly-once after a crash.
        False (nothing changed) when the message is no longer waiting: it was cancelled (by
        the operator, or an opt-out) while the sender looked at it, and must not go out."""
        changed = await self._fenced(
            session,
            "UPDATE outbox SET session = ?, wa_id = ?, state = 'sending', wait_reason = '',"
            " updated_at = ? WHERE id = ? AND state IN ('queued', 'sending')",
            (session, wa_id, self.clock(), mid),
        )
        return changed == 1

    async def mark_sent(
        self, mid: str, session: str, chat_id: str, peer: Peer | None = None
    ) -> OutboxMessage:
        """The page accepted the message (its send resolved, or it was found after a crash);
        never moves it back when an ack overtook the reply. Counts it for the contact (`peer`:
        what the page resolved of the recipient, else what `chat_id` says) in the same commit.
        The message."""
        now = self.clock()
        async with self.db.transaction() as conn:
            if self.fence is not None:
                await self.fence(conn, session)
            await conn.execute(
                "UPDATE outbox SET state = CASE WHEN state IN ('queued', 'sending') THEN 'sent'"
                " ELSE state END, sent_at = COALESCE(sent_at, ?), wait_reason = '',"
                " last_error = '', session = ?, updated_at = ? WHERE id = ?",
                (now, session, now, mid),
            )
            found = await contacts.learn(conn, peer or Peer.of(chat_id), now=now)
            if found is not None:
                await contacts.interaction(conn, found, session, now, inbound=False)
            return _message(await conn.fetchone("SELECT * FROM outbox WHERE id = ?", (mid,)))

    async def ack(self, wa_id: str, ack: int) -> OutboxMessage | None:
        """Move a message forward on an ack (never backwards; a negative ack fails a message
        not yet delivered); the message if it changed."""
        row = await self.db.fetchone("SELECT * FROM outbox WHERE wa_id = ?", (wa_id,))
        if row is None:
            return None
        if ack < 0:
            if row["state"] not in (QUEUED, SENDING, SENT):
                return None
            await self.update(
                row["id"], state=FAILED, last_error=f"WhatsApp rejected the message (ack {ack})"
            )
            return await self.get(row["id"])
        state = ACK_STATE.get(ack)
        if state is None or _RANK.get(row["state"], 9) >= _RANK[state]:
            return None
        fields: dict[str, Any] = {"state": state, _AT[state]: self.clock(), "last_error": ""}
        if row["sent_at"] is None:
            fields["sent_at"] = fields[_AT[state]]  # an ack can overtake the send reply
        await self.update(row["id"], **fields)
        return await self.get(row["id"])

    async def cancel(self, mid: str) -> bool:
        """Cancel a queued message; False when it is no longer queued."""
        changed = await self.db.execute(
            "UPDATE outbox SET state = 'cancelled', updated_at = ? WHERE id = ? AND state = 'queued'",
            (self.clock(), mid),
        )
        return changed == 1

    async def release_to_pool(self, session: str) -> int:
        """Hand a dropped session's queued `auto` messages back to the pool (not those already
        `sending`: another session sending them could send them twice)."""
        return await self.db.execute(
            "UPDATE outbox SET session = NULL, not_before = 0, wait_reason = '', updated_at = ?"
            " WHERE session = ? AND state = 'queued' AND from_spec = 'auto'",
            (self.clock(), session),
        )

    async def fail_waiting(self, session: str, reason: str) -> list[str]:
        """Fail every queued message of `session` (it was deleted); their ids."""
        rows = await self.db.fetchall(
            "SELECT id FROM outbox WHERE session = ? AND state = 'queued'", (session,)
        )
        await self.db.execute(
            "UPDATE outbox SET state = 'failed', last_error = ?, updated_at = ?"
            " WHERE session = ? AND state = 'queued'",
            (reason, self.clock(), session),
        )
        return [str(r[0]) for r in rows]

    # -- inbox and contacts ----------------------------------------------------------------

    async def store_inbound(self, session: str, m: dict[str, Any]) -> dict[str, Any] | None:
        """Store an inbound message (once per session and id) with the sender's number and
        LID as far as the page or an earlier message told them, and count it for the contact;
        the row, or None if it was already stored."""
        now = self.clock()
        sender = str(m.get("sender") or "")
        told = Peer.of(sender, pn=m.get("sender_pn"), lid=m.get("sender_lid"))
        push_name = str(m.get("push_name") or "")
        async with self.db.transaction() as conn:
            person = await contacts.learn(conn, told, push_name=push_name, now=now)
            known = person.peer if person is not None else told
            row = await conn.fetchone(
                "INSERT INTO inbox (session, wa_id, chat_id, sender, sender_pn,"
                " sender_lid, push_name, body, type, t, received_at, media_kind, media_mime,"
                " media_size, media_name, media_sha256)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING RETURNING *",
                (
                    session,
                    m.get("wa_id") or m.get("id"),
                    m.get("chat_id", ""),
                    sender,
                    known.pn,
                    known.lid,
                    push_name,
                    m.get("body", ""),
                    m.get("type") or "chat",
                    float(m.get("t") or now),
                    now,
                    *_inbound_media(m),
                ),
            )
            if row is None:  # already stored
                return None
            if person is not None:
                await contacts.interaction(conn, person, session, now, inbound=True)
            return dict(row)

    async def inbound(self, inbox_id: int) -> dict[str, Any]:
        """One received message; MessageNotFound when there is none with that id."""
        r = await self.db.fetchone("SELECT * FROM inbox WHERE id = ?", (inbox_id,))
        if r is None:
            raise MessageNotFound(f"no received message {inbox_id} (see `wasupctl inbox`)")
        return dict(r)

    async def media_stored(self, inbox_id: int, sha256: str) -> None:
        """The received message's file is in the media store now, under `sha256`."""
        await self.db.execute(
            "UPDATE inbox SET media_stored = 1, media_sha256 = ? WHERE id = ?", (sha256, inbox_id)
        )

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
        """The session this contact last talked to, or that last took a message for it (so a
        burst to one contact stays on one number before any of it is sent). A person's number
        and LID are one contact: either id finds the other's history."""
        ids = await self.contacts.ids_of(chat_id)
        marks = ", ".join("?" * len(ids))
        r = await self.db.fetchone(
            "SELECT session, MAX(at) FROM ("  # noqa: S608 (only placeholders are formatted in)
            " SELECT s.session, s.last_at AS at FROM contact_sessions AS s"
            f" JOIN contacts AS c ON c.id = s.contact_id WHERE c.pn IN ({marks}) OR c.lid IN ({marks})"
            f" UNION ALL SELECT session, received_at FROM inbox WHERE chat_id IN ({marks})"
            f" UNION ALL SELECT session, created_at FROM outbox WHERE chat_id IN ({marks})"
            " AND session IS NOT NULL AND state NOT IN ('failed', 'cancelled')) AS seen"
            " GROUP BY session ORDER BY 2 DESC LIMIT 1",
            (*ids, *ids, *ids, *ids),
        )
        return str(r[0]) if r else None
