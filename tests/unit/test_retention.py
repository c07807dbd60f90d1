"""Retention on a real SQLite store: finished and old records go, anything in flight or recent
stays, and each session keeps its newest state history."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.helpers.postgres import StoreTarget
from tests.helpers.waiting import eventually_async
from wasupd.store import retention
from wasupd.store.db import Database, open_database

NOW = 1_000_000_000.0
OLD, RECENT = NOW - 100 * retention.DAY, NOW - 1 * retention.DAY
CUTOFF = NOW - 90 * retention.DAY


async def fill(db: Database) -> None:
    """Old and recent rows in every table, in every state."""
    for i, state in enumerate(
        ["queued", "sending", "sent", "delivered", "read", "failed", "cancelled"]
    ):
        for age, tag in ((OLD, "old"), (RECENT, "new")):
            await db.execute(
                "INSERT INTO outbox (id, from_spec, chat_id, body, state, created_at, updated_at)"
                " VALUES (?, 'auto', 'c', 'b', ?, ?, ?)",
                (f"{tag}-{state}-{i}", state, age, age),
            )
    for age, tag in ((OLD, "old"), (RECENT, "new")):
        await db.execute(
            "INSERT INTO inbox (session, wa_id, chat_id, sender, body, t, received_at)"
            " VALUES ('a', ?, 'c', 's', 'b', ?, ?)",
            (tag, age, age),
        )
        await db.execute(
            "INSERT INTO contacts (pn, created_at, updated_at) VALUES (?, ?, ?)",
            (f"{tag}@c.us", age, age),
        )
        await db.execute(
            "INSERT INTO contact_sessions (contact_id, session, first_at, last_at)"
            " SELECT id, 'a', ?, ? FROM contacts WHERE pn = ?",
            (age, age, f"{tag}@c.us"),
        )
        for state in ("pending", "delivered", "failed"):
            await db.execute(
                "INSERT INTO webhook_deliveries (id, url, event, payload, state, created_at,"
                " updated_at) VALUES (?, 'u', 'e', '{}', ?, ?, ?)",
                (f"{tag}-{state}", state, age, age),
            )
    # Learnt long ago, but a session talked to it lately: it stays.
    await db.execute(
        "INSERT INTO contacts (pn, lid, created_at, updated_at) VALUES ('kept@c.us', '1@lid', ?, ?)",
        (OLD, OLD),
    )
    await db.execute(
        "INSERT INTO contact_sessions (contact_id, session, first_at, last_at)"
        " SELECT id, 'b', ?, ? FROM contacts WHERE pn = 'kept@c.us'",
        (OLD, RECENT),
    )
    for session, n in (("busy", 30), ("quiet", 3)):
        for k in range(n):
            await db.execute(
                "INSERT INTO session_history (session, at, from_state, to_state)"
                " VALUES (?, ?, 'qr', 'qr')",
                (session, OLD + k),
            )


async def ids(db: Database, sql: str) -> list[str]:
    return sorted(str(r[0]) for r in await db.fetchall(sql))


async def test_prune_keeps_in_flight_recent_and_the_last_history(store_target: StoreTarget) -> None:
    """Only finished, old rows go; batches smaller than the work still finish the job."""
    db = await store_target.open()
    try:
        await fill(db)
        counts = await retention.prune(db, CUTOFF, batch=4)
        outbox = await ids(db, "SELECT id FROM outbox")
        assert outbox == sorted(
            ["old-queued-0", "old-sending-1"] + [o for o in outbox if o.startswith("new-")]
        )
        assert len([o for o in outbox if o.startswith("new-")]) == 7
        assert await ids(db, "SELECT wa_id FROM inbox") == ["new"]
        assert await ids(db, "SELECT pn FROM contacts") == ["kept@c.us", "new@c.us"]
        assert await ids(db, "SELECT session FROM contact_sessions") == ["a", "b"]
        assert await ids(db, "SELECT id FROM webhook_deliveries") == [
            "new-delivered",
            "new-failed",
            "new-pending",
            "old-pending",
        ]
        history = await db.fetchall(
            "SELECT session, count(*) FROM session_history GROUP BY session ORDER BY session"
        )
        assert [tuple(r) for r in history] == [("busy", retention.HISTORY_KEPT), ("quiet", 3)]
        newest = await db.fetchone("SELECT min(at) FROM session_history WHERE session = 'busy'")
        assert newest is not None and newest[0] == OLD + 10  # the 20 newest of 30 stayed
        assert counts == {
            "outbox": 5,
            "inbox": 1,
            "webhook_deliveries": 2,
            "contact_sessions": 1,
            "contacts": 1,
            "session_history": 10,
        }
        assert await retention.prune(db, CUTOFF) == dict.fromkeys(counts, 0)
    finally:
        await db.close()


async def test_the_loop_follows_the_configured_days(store_target: StoreTarget) -> None:
    """`run` prunes with the current setting each round; 0 keeps everything."""
    db = await store_target.open()
    days, rounds = [0.0], [0]

    def setting() -> float:
        rounds[0] += 1
        return days[0]

    try:
        await fill(db)
        task = asyncio.ensure_future(
            retention.run(db, setting, first_delay=0, interval=0.01, clock=lambda: NOW)
        )
        try:
            await eventually_async(  # rounds that ran with retention off
                lambda: rounds[0], 10, "3 rounds", ok=lambda n: n >= 3, interval=0.01
            )
            assert len(await ids(db, "SELECT wa_id FROM inbox")) == 2
            days[0] = 90.0
            await eventually_async(
                lambda: ids(db, "SELECT wa_id FROM inbox"),
                10,
                "one inbox row left",
                ok=lambda rows: len(rows) == 1,
                interval=0.01,
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await db.close()


async def test_each_rule_finds_old_rows_through_a_time_index(tmp_path: Path) -> None:
    """The plan of every batch searches an index on the time column: a batch's cost does not
    grow with the number of recent rows (SQLite's planner; PostgreSQL's weighs statistics)."""
    db = await open_database(tmp_path / "w.db")
    try:
        for table, (key, where) in retention.RULES.items():
            sql = f"SELECT {key} FROM {table} WHERE {where} LIMIT 10"
            plan = " | ".join(
                str(r[3])
                for r in await db.fetchall(
                    "EXPLAIN QUERY PLAN " + sql, {"cutoff": NOW, "kept": retention.HISTORY_KEPT}
                )
            )
            assert plan.startswith(f"SEARCH {table} USING"), plan
            assert "<?)" in plan.split(" | ")[0], plan  # a range on the time column
    finally:
        await db.close()
