"""The durable webhook delivery queue (`webhook_deliveries`): every statement about it."""

from __future__ import annotations

import time
from typing import Any

from wasupd.store.db import Database

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


class WebhookRepo:
    """Typed access to `webhook_deliveries`; one row per (event, URL), its id the idempotency id."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, rows: list[tuple[str, str, str, str]], now: float) -> None:
        """Queue deliveries `(id, url, event, payload)` in one transaction."""
        async with self.db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO webhook_deliveries (id, url, event, payload, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(*row, now, now) for row in rows],
            )

    async def due(self, now: float, limit: int = 50) -> list[dict[str, Any]]:
        """Pending deliveries whose time has come, oldest first."""
        rows = await self.db.fetchall(
            "SELECT * FROM webhook_deliveries WHERE state = 'pending' AND next_at <= ?"
            " ORDER BY created_at LIMIT ?",
            (now, limit),
        )
        return [dict(r) for r in rows]

    async def take(self, did: str, now: float, hold: float) -> bool:
        """Reserve one due delivery for this host for `hold` seconds (its next try moves
        out by that much): False when another host (of a fleet) reserved or made it first.
        A host that dies holding it leaves it due again after `hold`."""
        changed = await self.db.execute(
            "UPDATE webhook_deliveries SET next_at = ? WHERE id = ? AND state = 'pending'"
            " AND next_at <= ?",
            (now + hold, did, now),
        )
        return changed == 1

    async def next_due_at(self) -> float | None:
        """When the earliest pending delivery is due; None when none is pending."""
        row = await self.db.fetchone(
            "SELECT MIN(next_at) FROM webhook_deliveries WHERE state = 'pending'"
        )
        return None if row is None or row[0] is None else float(row[0])

    async def record_attempt(
        self,
        did: str,
        *,
        state: str,
        attempts: int,
        next_at: float,
        status: int | None,
        error: str,
        now: float,
    ) -> None:
        """Store the outcome of one delivery attempt."""
        await self.db.execute(
            "UPDATE webhook_deliveries SET state = ?, attempts = ?, next_at = ?, last_status = ?,"
            " last_error = ?, updated_at = ? WHERE id = ?",
            (state, attempts, next_at, status, error, now, did),
        )

    async def failed_ids(self) -> list[str]:
        """Every failed delivery, oldest first."""
        rows = await self.db.fetchall(
            "SELECT id FROM webhook_deliveries WHERE state = 'failed' ORDER BY created_at"
        )
        return [str(r[0]) for r in rows]

    async def requeue(self, ids: list[str]) -> tuple[list[str], list[str]]:
        """Make failed deliveries pending again from their first attempt, due now:
        (requeued ids, ids that are not failed deliveries)."""
        requeued: list[str] = []
        skipped: list[str] = []
        async with self.db.transaction() as conn:
            for did in ids:
                changed = await conn.execute(
                    "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_at = 0,"
                    " updated_at = ? WHERE id = ? AND state = 'failed'",
                    (time.time(), did),
                )
                (requeued if changed else skipped).append(did)
        return requeued, skipped

    async def in_state(self, state: str, limit: int) -> list[dict[str, Any]]:
        """Deliveries in `state`, newest first."""
        rows = await self.db.fetchall(
            "SELECT id, url, event, state, attempts, next_at, last_status, last_error, created_at"
            " FROM webhook_deliveries WHERE state = ? ORDER BY created_at DESC LIMIT ?",
            (state, limit),
        )
        return [dict(r) for r in rows]
