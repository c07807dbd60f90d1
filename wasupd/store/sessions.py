"""Sessions and their state history."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from wasupd.errors import SessionExists, SessionNotFound
from wasupd.store.db import Database, Row


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """One row of `sessions`."""

    name: str
    phone: str | None
    me: str | None
    state: str
    reason: str
    desired: str
    options: dict[str, Any] = field(default_factory=dict)
    created_at: float
    updated_at: float
    linked_at: float | None
    restarts: int
    qr: dict[str, Any] | None = None  # in a fleet: the QR its host offers (see schema step 8)


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One recorded state transition."""

    at: float
    from_state: str
    to_state: str
    reason: str


def _record(row: Row) -> SessionRecord:
    return SessionRecord(
        name=row["name"],
        phone=row["phone"],
        me=row["me"],
        state=row["state"],
        reason=row["reason"],
        desired=row["desired"],
        options=json.loads(row["options"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        linked_at=row["linked_at"],
        restarts=row["restarts"],
        qr=json.loads(row["qr"]) if row["qr"] else None,
    )


class SessionRepo:
    """Typed access to the `sessions` and `session_history` tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, name: str, *, phone: str | None, options: dict[str, Any], now: float
    ) -> SessionRecord:
        """Insert a new stopped session; `SessionExists` if the name is taken."""
        created = await self.db.execute(
            "INSERT INTO sessions (name, phone, state, options, created_at, updated_at)"
            " VALUES (?, ?, 'stopped', ?, ?, ?) ON CONFLICT (name) DO NOTHING",
            (name, phone, json.dumps(options), now, now),
        )
        if not created:
            raise SessionExists(f"session {name!r} already exists", session=name)
        return await self.get(name)

    async def get(self, name: str) -> SessionRecord:
        """The session called `name`; `SessionNotFound` otherwise."""
        row = await self.db.fetchone("SELECT * FROM sessions WHERE name = ?", (name,))
        if row is None:
            raise SessionNotFound(
                f"no session named {name!r} (see `wasupctl session list`)", session=name
            )
        return _record(row)

    async def all(self) -> list[SessionRecord]:
        """Every session, by name."""
        return [_record(r) for r in await self.db.fetchall("SELECT * FROM sessions ORDER BY name")]

    async def record_transition(
        self, name: str, *, from_state: str, to_state: str, reason: str, at: float
    ) -> None:
        """Store the new state and append it to the history, in one transaction."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE sessions SET state = ?, reason = ?, updated_at = ? WHERE name = ?",
                (to_state, reason, at, name),
            )
            await conn.execute(
                "INSERT INTO session_history (session, at, from_state, to_state, reason)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, at, from_state, to_state, reason),
            )

    async def set_desired(self, name: str, desired: str) -> None:
        """Whether the session should run when the daemon starts ('running' | 'stopped')."""
        await self.db.execute("UPDATE sessions SET desired = ? WHERE name = ?", (desired, name))

    async def set_restarts(self, name: str, restarts: int) -> None:
        """Store the restart counter."""
        await self.db.execute("UPDATE sessions SET restarts = ? WHERE name = ?", (restarts, name))

    async def set_linked(self, name: str, *, me: str | None, at: float) -> None:
        """Record the account's own id; `linked_at` keeps the first link time (number age)."""
        await self.db.execute(
            "UPDATE sessions SET me = COALESCE(?, me), linked_at = COALESCE(linked_at, ?)"
            " WHERE name = ?",
            (me, at, name),
        )

    async def set_qr(self, name: str, qr: dict[str, Any] | None) -> None:
        """The QR now on offer (None: none), for the other hosts of a fleet to show."""
        await self.db.execute(
            "UPDATE sessions SET qr = ? WHERE name = ?",
            (json.dumps(qr) if qr is not None else None, name),
        )

    async def history(self, name: str, limit: int = 50) -> list[HistoryEntry]:
        """The latest `limit` transitions, oldest first."""
        rows = await self.db.fetchall(
            "SELECT * FROM (SELECT * FROM session_history WHERE session = ?"
            " ORDER BY id DESC LIMIT ?) AS latest ORDER BY id",
            (name, limit),
        )
        return [
            HistoryEntry(
                at=r["at"], from_state=r["from_state"], to_state=r["to_state"], reason=r["reason"]
            )
            for r in rows
        ]

    async def delete(self, name: str) -> None:
        """Remove the session and its history."""
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM sessions WHERE name = ?", (name,))
            await conn.execute("DELETE FROM session_history WHERE session = ?", (name,))
