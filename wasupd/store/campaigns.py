"""Campaigns, their recipients and the opt-out suppression list.

A campaign is created as a `draft`; its recipients are added in batches (state `pending`) and
only become outbox messages when the campaign starts (state `queued`, with the number, the
planned time and the message id). Each outbox row carries the idempotency key
`campaign:<name>:<recipient>`, so queueing a batch again (after a crash) never makes a second
message. What a recipient shows (queued, sent, delivered, read, failed...) is read from its
outbox message; `opted_out` and `pending` are the recipient's own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from wasupd.errors import CampaignExists, CampaignNotFound
from wasupd.store.db import Database
from wasupd.store.db import Row as StoredRow
from wasupd.store.messages import QUEUED, MessageRepo, OutboxMessage

# A paused campaign's queued messages wait until this far-off time; resume sets them back.
PAUSED_UNTIL = 1e15
# Recipients' own states; once queued, the outbox message's state is what they show.
PENDING, QUEUED_R, OPTED_OUT = "pending", "queued", "opted_out"
_STATE = "CASE WHEN r.state = 'queued' THEN COALESCE(o.state, 'queued') ELSE r.state END"


@dataclass(slots=True, kw_only=True)
class Campaign:
    """One row of `campaigns`; `numbers` empty means the whole pool (`--from auto`)."""

    id: int
    name: str
    state: str  # draft, scheduling, running, paused, finished, cancelled
    body: str
    numbers: list[str]
    pinned: bool
    send_window: str
    start_at: float | None
    until: float | None
    plan: dict[str, Any]
    errors: int
    paused_at: float | None
    created_at: float
    updated_at: float
    media: dict[str, Any] | None = None  # a file every recipient gets (MediaRef fields)

    @classmethod
    def from_row(cls, row: StoredRow) -> Campaign:
        """The campaign stored in `row` (a `SELECT *` of campaigns)."""
        d = dict(row)
        return cls(
            **{
                **d,
                "numbers": json.loads(d["numbers"]),
                "pinned": bool(d["pinned"]),
                "plan": json.loads(d["plan"]),
                "media": json.loads(d["media"]) if d.get("media") else None,
            }
        )

    def as_dict(self) -> dict[str, Any]:
        """The campaign as RPC answers carry it."""
        return {f: getattr(self, f) for f in self.__slots__}


@dataclass(frozen=True, slots=True)
class Row:
    """One CSV row as the daemon stores it."""

    line: int
    recipient: str  # chat id
    phone: str
    vars: dict[str, str]


@dataclass(frozen=True, slots=True)
class Pending:
    """A recipient about to be planned; `sticky` is the campaign number it already talks to."""

    line: int
    recipient: str
    vars: dict[str, str]
    sticky: str | None


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where and when one recipient's message goes."""

    recipient: str
    session: str
    planned_at: float
    body: str


def key_for(campaign: str, recipient: str) -> str:
    """The outbox idempotency key of one recipient of one campaign (exactly once)."""
    return f"campaign:{campaign}:{recipient}"


class CampaignRepo:
    """Typed access to campaigns, campaign_recipients and suppressions."""

    def __init__(self, db: Database, messages: MessageRepo, clock: Callable[[], float] = time.time):
        self.db = db
        self.messages = messages
        self.clock = clock

    # -- campaigns -------------------------------------------------------------------------

    async def create_draft(self, **fields: Any) -> Campaign:
        """A new draft; a draft of the same name left by an interrupted create is replaced.
        CampaignExists when a started campaign has the name."""
        now = self.clock()
        name = fields["name"]
        async with self.db.transaction() as conn:
            await conn.lock("campaigns.names")  # read-then-replace of a name, on every host
            old = await conn.fetchone("SELECT state FROM campaigns WHERE name = ?", (name,))
            if old is not None and old[0] != "draft":
                raise CampaignExists(
                    f"campaign {name!r} exists ({old[0]}): see `wasupctl campaign show {name}`,"
                    " or choose another name"
                )
            await conn.execute("DELETE FROM campaigns WHERE name = ?", (name,))
            await conn.execute(
                "INSERT INTO campaigns (name, state, body, numbers, pinned, send_window,"
                " start_at, until, created_at, updated_at, media)"
                " VALUES (?, 'draft', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    fields["body"],
                    json.dumps(fields["numbers"]),
                    int(fields["pinned"]),
                    fields["send_window"],
                    fields["start_at"],
                    fields["until"],
                    now,
                    now,
                    json.dumps(fields["media"]) if fields.get("media") else "",
                ),
            )
        return await self.get(name)

    async def get(self, name: str) -> Campaign:
        """One campaign; CampaignNotFound if there is none with that name."""
        row = await self.db.fetchone("SELECT * FROM campaigns WHERE name = ?", (name,))
        if row is None:
            raise CampaignNotFound(f"no campaign {name!r} (see `wasupctl campaign list`)")
        return Campaign.from_row(row)

    async def by_id(self, cid: int) -> Campaign:
        """One campaign by its id."""
        row = await self.db.fetchone("SELECT * FROM campaigns WHERE id = ?", (cid,))
        if row is None:
            raise CampaignNotFound(f"no campaign with id {cid}")
        return Campaign.from_row(row)

    async def listing(self, states: Sequence[str] = ()) -> list[Campaign]:
        """Campaigns, newest first (drafts left by interrupted creates are not listed)."""
        sql, args = "SELECT * FROM campaigns WHERE state != 'draft'", list[Any]()
        if states:
            sql += f" AND state IN ({', '.join('?' * len(states))})"
            args += list(states)
        rows = await self.db.fetchall(sql + " ORDER BY id DESC", tuple(args))
        return [Campaign.from_row(r) for r in rows]

    async def update(self, cid: int, **fields: Any) -> None:
        """Set columns of one campaign (updated_at too); `plan` and `numbers` as JSON."""
        for key in ("plan", "numbers"):
            if key in fields:
                fields[key] = json.dumps(fields[key])
        fields["updated_at"] = self.clock()
        cols = ", ".join(f"{k} = ?" for k in fields)
        await self.db.execute(
            f"UPDATE campaigns SET {cols} WHERE id = ?",  # noqa: S608
            (*fields.values(), cid),
        )

    async def delete(self, cid: int) -> None:
        """Forget a campaign and its recipients (a draft that was refused or only planned)."""
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM campaign_recipients WHERE campaign_id = ?", (cid,))
            await conn.execute("DELETE FROM campaigns WHERE id = ?", (cid,))

    # -- recipients: adding ----------------------------------------------------------------

    async def add_rows(self, cid: int, rows: list[Row]) -> list[tuple[int, int]]:
        """Store a batch of a draft's rows; those whose recipient is already in the campaign
        are not stored and come back as (line, line of the first occurrence)."""
        if not rows:
            return []
        async with self.db.transaction() as conn:
            await conn.lock(f"campaigns.rows.{cid}")  # read-then-insert of this draft's rows
            wanted = sorted({r.recipient for r in rows})
            marks = ", ".join("?" * len(wanted))
            sql = (
                "SELECT recipient, line FROM campaign_recipients"  # noqa: S608
                f" WHERE campaign_id = ? AND recipient IN ({marks})"
            )
            first = {r[0]: int(r[1]) for r in await conn.fetchall(sql, (cid, *wanted))}
            dups: list[tuple[int, int]] = []
            fresh = []
            for r in rows:
                if r.recipient in first:
                    dups.append((r.line, first[r.recipient]))
                    continue
                first[r.recipient] = r.line
                fresh.append((cid, r.recipient, r.line, r.phone, json.dumps(r.vars)))
            await conn.executemany(
                "INSERT INTO campaign_recipients (campaign_id, recipient, line, phone, vars)"
                " VALUES (?, ?, ?, ?, ?)",
                fresh,
            )
        return dups

    async def skip_suppressed(self, cid: int) -> int:
        """Mark the campaign's pending recipients on the suppression list `opted_out`."""
        return await self.db.execute(
            "UPDATE campaign_recipients SET state = 'opted_out' WHERE campaign_id = ?"
            " AND state = 'pending' AND recipient IN (SELECT chat_id FROM suppressions)",
            (cid,),
        )

    # -- recipients: planning and queueing -------------------------------------------------

    @staticmethod
    def _sticky_sql(numbers: Sequence[str]) -> str:
        marks = ", ".join("?" * len(numbers))
        return (
            "(SELECT s.session FROM contact_sessions s JOIN contacts c ON c.id = s.contact_id"  # noqa: S608
            " WHERE (c.pn = r.recipient OR c.lid = r.recipient)"
            f" AND s.session IN ({marks}) ORDER BY s.last_at DESC LIMIT 1)"
        )

    async def sticky_counts(self, cid: int, numbers: Sequence[str]) -> dict[str | None, int]:
        """Pending recipients by the campaign number they already talk to (None: none)."""
        sql = (
            f"SELECT {self._sticky_sql(numbers)} AS s, COUNT(*) FROM campaign_recipients r"  # noqa: S608
            " WHERE r.campaign_id = ? AND r.state = 'pending' GROUP BY s"
        )
        rows = await self.db.fetchall(sql, (*numbers, cid))
        return {r[0]: int(r[1]) for r in rows}

    async def pending(
        self, cid: int, numbers: Sequence[str], after_line: int, limit: int
    ) -> list[Pending]:
        """The next batch of pending recipients in CSV order, with their sticky number."""
        sql = (
            f"SELECT r.line, r.recipient, r.vars, {self._sticky_sql(numbers)}"  # noqa: S608
            " FROM campaign_recipients r WHERE r.campaign_id = ? AND r.state = 'pending'"
            " AND r.line > ? ORDER BY r.line LIMIT ?"
        )
        rows = await self.db.fetchall(sql, (*numbers, cid, after_line, limit))
        return [Pending(int(r[0]), r[1], json.loads(r[2]), r[3]) for r in rows]

    async def queue(self, campaign: Campaign, batch: list[Assignment]) -> None:
        """Turn a batch of recipients into outbox messages, in ONE transaction with their
        assignment. A key already in the outbox (an earlier, interrupted start) keeps its
        message: never a second one."""
        now = self.clock()
        msgs = [self._message(campaign, a, now) for a in batch]
        async with self.db.transaction() as conn:
            if msgs:
                cols = list(msgs[0].as_dict())
                await conn.executemany(
                    f"INSERT INTO outbox ({', '.join(cols)})"  # noqa: S608
                    f" VALUES ({', '.join('?' * len(cols))}) ON CONFLICT DO NOTHING",
                    [tuple(m.as_dict().values()) for m in msgs],
                )
            await conn.executemany(
                "UPDATE campaign_recipients SET session = ?, planned_at = ?, state = 'queued',"
                " message_id = (SELECT id FROM outbox WHERE idempotency_key = ?)"
                " WHERE campaign_id = ? AND recipient = ?",
                [
                    (
                        a.session,
                        a.planned_at,
                        key_for(campaign.name, a.recipient),
                        campaign.id,
                        a.recipient,
                    )
                    for a in batch
                ],
            )

    def _message(self, c: Campaign, a: Assignment, now: float) -> OutboxMessage:
        # Pinned to its number (from_spec = the session): a logged-out number's messages are
        # handed over by the campaign, once, never by the pool.
        campaign, media = c.name, c.media or {}
        return OutboxMessage(
            id=self.messages.new_id(),
            session=a.session,
            from_spec=a.session,
            chat_id=a.recipient,
            body=a.body,
            idempotency_key=key_for(campaign, a.recipient),
            state=QUEUED,
            wa_id=None,
            attempts=0,
            last_error="",
            not_before=a.planned_at,
            wait_reason=f"campaign {campaign}: planned",
            created_at=now,
            updated_at=now,
            sent_at=None,
            delivered_at=None,
            read_at=None,
            media_sha256=media.get("sha256"),
            media_kind=media.get("kind"),
            media_mime=media.get("mime"),
            media_size=media.get("size"),
            media_name=media.get("name"),
        )

    async def queued_per_session(self, cid: int) -> dict[str, int]:
        """Recipients already queued, by number (to continue an interrupted start)."""
        rows = await self.db.fetchall(
            "SELECT session, COUNT(*) FROM campaign_recipients WHERE campaign_id = ?"
            " AND state = 'queued' GROUP BY session",
            (cid,),
        )
        return {r[0]: int(r[1]) for r in rows}

    # -- recipients: reading ---------------------------------------------------------------

    async def counts(self, cid: int) -> list[tuple[str | None, str, int, int]]:
        """(number, state, recipients, replied) for every number and state of the campaign."""
        rows = await self.db.fetchall(
            f"SELECT r.session, {_STATE}, COUNT(*), COUNT(r.replied_at)"  # noqa: S608
            " FROM campaign_recipients r LEFT JOIN outbox o ON o.id = r.message_id"
            " WHERE r.campaign_id = ? GROUP BY 1, 2",
            (cid,),
        )
        return [(r[0], r[1], int(r[2]), int(r[3] or 0)) for r in rows]

    async def last_planned(self, cid: int) -> float | None:
        """The latest planned time of a message not yet sent (the estimated finish)."""
        r = await self.db.fetchone(
            "SELECT MAX(r.planned_at) FROM campaign_recipients r JOIN outbox o"
            " ON o.id = r.message_id WHERE r.campaign_id = ? AND o.state IN ('queued', 'sending')",
            (cid,),
        )
        return float(r[0]) if r and r[0] is not None else None

    async def last_planned_per_session(self, cid: int) -> dict[str, float]:
        """Per number, the latest planned time of its campaign messages (hand-overs go after)."""
        rows = await self.db.fetchall(
            "SELECT session, MAX(planned_at) FROM campaign_recipients WHERE campaign_id = ?"
            " AND session IS NOT NULL GROUP BY session",
            (cid,),
        )
        return {r[0]: float(r[1]) for r in rows if r[1] is not None}

    async def waiting(self, cid: int) -> int:
        """Recipients not yet finished: pending, or their message queued or sending."""
        r = await self.db.fetchone(
            f"SELECT COUNT(*) FROM campaign_recipients r LEFT JOIN outbox o"  # noqa: S608
            f" ON o.id = r.message_id WHERE r.campaign_id = ?"
            f" AND {_STATE} IN ('pending', 'queued', 'sending')",
            (cid,),
        )
        return int(r[0]) if r else 0

    async def report(self, cid: int, after_line: int, limit: int) -> list[dict[str, Any]]:
        """One row per recipient in CSV order: number, state, times, failure, replied."""
        rows = await self.db.fetchall(
            f"SELECT r.line, r.phone, r.recipient, r.session, {_STATE} AS state,"  # noqa: S608
            " r.planned_at, r.message_id, o.sent_at, o.delivered_at, o.read_at,"
            " CASE WHEN o.state = 'failed' THEN o.last_error ELSE '' END AS failure,"
            " r.replied_at, r.handed_over FROM campaign_recipients r"
            " LEFT JOIN outbox o ON o.id = r.message_id"
            " WHERE r.campaign_id = ? AND r.line > ? ORDER BY r.line LIMIT ?",
            (cid, after_line, limit),
        )
        return [{**dict(r), "handed_over": bool(r["handed_over"])} for r in rows]

    async def campaign_of(self, message_id: str) -> int | None:
        """The campaign a message belongs to, if any."""
        r = await self.db.fetchone(
            "SELECT campaign_id FROM campaign_recipients WHERE message_id = ?", (message_id,)
        )
        return int(r[0]) if r else None

    # -- control ---------------------------------------------------------------------------

    _QUEUED_OF = (
        "id IN (SELECT message_id FROM campaign_recipients WHERE campaign_id = ?"
        " AND message_id IS NOT NULL) AND state = 'queued'"
    )

    async def hold(self, cid: int, reason: str) -> int:
        """Keep the campaign's queued messages from being sent (pause)."""
        return await self.db.execute(
            f"UPDATE outbox SET not_before = ?, wait_reason = ?, updated_at = ?"  # noqa: S608
            f" WHERE {self._QUEUED_OF}",
            (PAUSED_UNTIL, reason, self.clock(), cid),
        )

    async def release(self, cid: int, shift: float, reason: str) -> int:
        """Resume: the queued messages' planned times move on by `shift` seconds."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE campaign_recipients SET planned_at = planned_at + ? WHERE campaign_id = ?"
                " AND message_id IN (SELECT id FROM outbox WHERE state = 'queued')",
                (shift, cid),
            )
            return await conn.execute(
                "UPDATE outbox SET not_before = (SELECT planned_at FROM campaign_recipients r"  # noqa: S608
                " WHERE r.message_id = outbox.id), wait_reason = ?, updated_at = ?"
                f" WHERE {self._QUEUED_OF}",
                (reason, self.clock(), cid),
            )

    async def cancel(self, cid: int) -> int:
        """Cancel the campaign's queued messages (those already sending finish)."""
        return await self.db.execute(
            f"UPDATE outbox SET state = 'cancelled', last_error = 'campaign cancelled',"  # noqa: S608
            f" wait_reason = '', updated_at = ? WHERE {self._QUEUED_OF}",
            (self.clock(), cid),
        )

    async def handover_candidates(self, cid: int, session: str) -> list[tuple[str, str]]:
        """(recipient, message id) of a dropped number's queued messages not handed over yet."""
        rows = await self.db.fetchall(
            "SELECT r.recipient, r.message_id FROM campaign_recipients r JOIN outbox o"
            " ON o.id = r.message_id WHERE r.campaign_id = ? AND r.session = ?"
            " AND r.handed_over = 0 AND o.state = 'queued' ORDER BY r.line",
            (cid, session),
        )
        return [(r[0], r[1]) for r in rows]

    async def hand_over(self, cid: int, moves: list[tuple[str, str, str, float]]) -> int:
        """Move (recipient, message id, new number, planned time) in one transaction, each only
        while its message is still queued; marks them handed over (never a second time)."""
        moved = 0
        async with self.db.transaction() as conn:
            for recipient, mid, session, at in moves:
                changed = await conn.execute(
                    "UPDATE outbox SET session = ?, from_spec = ?, not_before = ?,"
                    " wait_reason = 'handed over', updated_at = ? WHERE id = ? AND state = 'queued'",
                    (session, session, at, self.clock(), mid),
                )
                if changed != 1:
                    continue
                moved += 1
                await conn.execute(
                    "UPDATE campaign_recipients SET session = ?, planned_at = ?, handed_over = 1"
                    " WHERE campaign_id = ? AND recipient = ?",
                    (session, at, cid, recipient),
                )
        return moved

    # -- opt-outs and replies --------------------------------------------------------------

    async def opt_out(self, chat_id: str, source: str) -> tuple[bool, list[tuple[int, str]]]:
        """Suppress a contact and cancel its queued campaign messages, in one transaction.
        (newly suppressed, [(campaign id, cancelled message id)])."""
        now = self.clock()
        async with self.db.transaction() as conn:
            added = await conn.execute(
                "INSERT INTO suppressions (chat_id, source, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (chat_id, source, now),
            )
            rows = await conn.fetchall(
                "UPDATE outbox SET state = 'cancelled', last_error = 'the contact opted out',"
                " wait_reason = '', updated_at = ? WHERE state = 'queued' AND id IN"
                " (SELECT message_id FROM campaign_recipients WHERE recipient = ?)"
                " RETURNING id",
                (now, chat_id),
            )
            cancelled = [str(r[0]) for r in rows]
            marks = ", ".join("?" * len(cancelled)) or "NULL"
            rows = await conn.fetchall(
                "UPDATE campaign_recipients SET state = 'opted_out' WHERE recipient = ?"  # noqa: S608
                f" AND (state = 'pending' OR message_id IN ({marks})) RETURNING campaign_id,"
                " COALESCE(message_id, '')",
                (chat_id, *cancelled),
            )
            touched = [(int(r[0]), str(r[1])) for r in rows]
        return added == 1, touched

    async def unsuppress(self, chat_id: str) -> bool:
        """Take a contact off the suppression list; False if it was not on it."""
        return await self.db.execute("DELETE FROM suppressions WHERE chat_id = ?", (chat_id,)) == 1

    async def is_suppressed(self, chat_id: str) -> bool:
        """Whether the contact opted out."""
        r = await self.db.fetchone("SELECT 1 FROM suppressions WHERE chat_id = ?", (chat_id,))
        return r is not None

    async def suppressions(self, after: str, limit: int) -> list[dict[str, Any]]:
        """The suppression list in chat id order, after `after`."""
        rows = await self.db.fetchall(
            "SELECT * FROM suppressions WHERE chat_id > ? ORDER BY chat_id LIMIT ?",
            (after, limit),
        )
        return [dict(r) for r in rows]

    async def mark_replied(self, session: str, chat_id: str) -> list[int]:
        """A contact wrote to `session` after its campaign message went out: `replied`.
        The campaigns concerned."""
        now = self.clock()
        async with self.db.transaction() as conn:  # a write, though it reads what it changed
            rows = await conn.fetchall(
                "UPDATE campaign_recipients SET replied_at = ? WHERE recipient = ?"
                " AND replied_at IS NULL AND message_id IN (SELECT id FROM outbox WHERE"
                " chat_id = ? AND session = ? AND sent_at IS NOT NULL AND sent_at <= ?)"
                " RETURNING campaign_id",
                (now, chat_id, chat_id, session, now),
            )
        return sorted({int(r[0]) for r in rows})
