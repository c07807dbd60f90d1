"""The store on both backends: migrations, refusal of newer schemas, the sessions repository,
and what the seam promises (rows by name and position, rowcounts, transactions, locks)."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers.postgres import PgServer, StoreTarget
from wasupd.addressing import Peer
from wasupd.errors import SessionExists, SessionNotFound, StoreError
from wasupd.store.backend.postgres import PostgresDatabase
from wasupd.store.backend.sqlite import SqliteDatabase
from wasupd.store.db import MIGRATIONS, SCHEMA_VERSION, open_database
from wasupd.store.messages import MessageRepo, NewMessage
from wasupd.store.sessions import SessionRepo


async def test_new_database_is_migrated(store_target: StoreTarget) -> None:
    """A new store gets the current schema version (and WAL journaling on SQLite)."""
    db = await store_target.open()
    try:
        assert db.kind == store_target.kind
        assert await db.schema_version() == SCHEMA_VERSION
        if db.kind == "sqlite":
            row = await db.fetchone("PRAGMA journal_mode")
            assert row is not None and row[0] == "wal"
    finally:
        await db.close()
    async with await store_target.open() as again:  # opening a current store changes nothing
        assert await again.schema_version() == SCHEMA_VERSION


async def test_newer_sqlite_schema_is_refused_and_untouched(tmp_path: Path) -> None:
    """A file from a newer wasupd is refused with a clear message and left byte-identical."""
    path = tmp_path / "w.db"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="written by a newer wasupd"):
        await open_database(path)
    assert path.read_bytes() == before


async def test_newer_postgres_schema_is_refused_and_untouched(
    postgres_server: PgServer, postgres_db: str, tmp_path: Path
) -> None:
    """A PostgreSQL database a newer wasupd migrated is refused; no table is added or changed."""
    async with await open_database(tmp_path / "unused.db", postgres_db) as db:
        await db.execute("UPDATE wasupd_schema SET version = ?", (SCHEMA_VERSION + 1,))
    dbname = postgres_db.rsplit("/", 1)[1]

    def tables() -> list[tuple[object, ...]]:
        with postgres_server.admin(dbname) as conn:
            return conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' ORDER BY 1, 2"
            ).fetchall()

    before = tables()
    with pytest.raises(StoreError, match="written by a newer wasupd") as err:
        await open_database(tmp_path / "unused.db", postgres_db)
    assert "password" not in str(err.value) and ":pw-" not in str(err.value)
    assert tables() == before
    assert not (tmp_path / "unused.db").exists()  # no SQLite file made on the side


async def test_an_older_postgres_schema_is_migrated_forward(postgres_db: str) -> None:
    """A database at version 2 is taken through the later steps, keeping its rows."""
    async with await PostgresDatabase.open(postgres_db, MIGRATIONS[:2]) as old:
        assert await old.schema_version() == 2
        await old.execute(
            "INSERT INTO sessions (name, state, created_at, updated_at) VALUES ('a', 'stopped', 1, 1)"
        )
    async with await PostgresDatabase.open(postgres_db, MIGRATIONS) as db:
        assert await db.schema_version() == SCHEMA_VERSION
        assert [r["name"] for r in await db.fetchall("SELECT name FROM sessions")] == ["a"]


async def test_hosts_starting_together_migrate_once(postgres_db: str, tmp_path: Path) -> None:
    """Four opens at once on a new database (hosts of a fleet starting): each gets the current
    schema, the steps ran once (an advisory lock orders them), no open fails."""
    dbs = await asyncio.gather(*(open_database(tmp_path / "x.db", postgres_db) for _ in range(4)))
    try:
        for db in dbs:
            assert await db.schema_version() == SCHEMA_VERSION
        rows = await dbs[0].fetchall("SELECT version FROM wasupd_schema")
        assert [r[0] for r in rows] == [SCHEMA_VERSION]
    finally:
        for db in dbs:
            await db.close()


async def test_sessions_repo_round_trip(store_target: StoreTarget) -> None:
    """Create, transition with history, duplicates and unknown names behave as documented."""
    db = await store_target.open()
    try:
        repo = SessionRepo(db)
        await repo.create("a", phone="491512345", options={"proxy": "p"}, now=1.0)
        with pytest.raises(SessionExists):
            await repo.create("a", phone=None, options={}, now=2.0)
        await repo.record_transition(
            "a", from_state="stopped", to_state="starting", reason="go", at=3.0
        )
        rec = await repo.get("a")
        assert (rec.state, rec.reason, rec.options) == ("starting", "go", {"proxy": "p"})
        hist = await repo.history("a")
        assert [(h.from_state, h.to_state) for h in hist] == [("stopped", "starting")]
        await repo.delete("a")
        with pytest.raises(SessionNotFound):
            await repo.get("a")
    finally:
        await db.close()


async def test_rows_rowcounts_and_timestamps(store_target: StoreTarget) -> None:
    """A row answers by name, position and as a dict; execute says how many rows changed;
    a unix time in microseconds comes back exactly (PostgreSQL's REAL would round it)."""
    async with await store_target.open() as db:
        repo = SessionRepo(db)
        t = 1_764_888_000.123456
        for name in ("a", "b", "c"):
            await repo.create(name, phone=None, options={}, now=t)
        row = await db.fetchone("SELECT name, created_at FROM sessions WHERE name = ?", ("b",))
        assert row is not None and row["name"] == row[0] == "b" and row[1] == t
        assert dict(row) == {"name": "b", "created_at": t}
        assert await db.execute("UPDATE sessions SET restarts = 1 WHERE name != ?", ("a",)) == 2
        assert await db.execute("UPDATE sessions SET restarts = 1 WHERE name = 'zz'") == 0
        named = await db.fetchall(
            "SELECT name FROM sessions WHERE restarts = :n AND name LIKE '%' ORDER BY name",
            {"n": 1},
        )
        assert [r[0] for r in named] == ["b", "c"]
        assert (await repo.get("a")).created_at == t


async def test_a_failed_transaction_leaves_nothing(store_target: StoreTarget) -> None:
    """A block that raises is rolled back as a whole; the store stays usable."""
    async with await store_target.open() as db:
        repo = SessionRepo(db)
        await repo.create("a", phone=None, options={}, now=1.0)
        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await tx.execute("UPDATE sessions SET state = 'gone'")
                await tx.execute("DELETE FROM sessions")
                raise RuntimeError("half way")
        assert (await repo.get("a")).state == "stopped"


async def test_locked_read_then_write_blocks_run_one_at_a_time(store_target: StoreTarget) -> None:
    """Twenty concurrent read-then-increment blocks under one lock lose no update: on
    PostgreSQL each holds its own pooled connection, and the lock orders them."""
    async with await store_target.open() as db:
        await SessionRepo(db).create("a", phone=None, options={}, now=1.0)

        async def bump() -> None:
            async with db.transaction() as tx:
                await tx.lock("test.bump")
                row = await tx.fetchone("SELECT restarts FROM sessions WHERE name = 'a'")
                assert row is not None
                await asyncio.sleep(0)  # let the others run into the lock
                await tx.execute("UPDATE sessions SET restarts = ? WHERE name = 'a'", (row[0] + 1,))

        async with asyncio.timeout(30):
            await asyncio.gather(*(bump() for _ in range(20)))
        assert (await SessionRepo(db).get("a")).restarts == 20


async def test_unreachable_server_is_a_store_error_saying_what_to_check(
    postgres_server: PgServer, tmp_path: Path
) -> None:
    """No server on the port, a wrong password, a missing database, a malformed URL: each a
    StoreError naming the place and what to check, never the password."""
    closed = f"postgresql://u:secret@127.0.0.1:{_closed_port()}/wasupd"
    cases = {
        closed: "runs and accepts connections",
        postgres_server.url("postgres", password="wrong"): "user name and password",
        postgres_server.url("no_such_db"): "create that database",
        "postgresql://u@host:notaport/x": "postgresql://USER:PASSWORD@HOST:PORT/DATABASE",
        "postgresql://u@host/x?nosuch=1": "postgresql://USER:PASSWORD@HOST:PORT/DATABASE",
    }
    for url, hint in cases.items():
        with pytest.raises(StoreError, match=hint) as err:
            await open_database(tmp_path / "x.db", url)
        assert "secret" not in str(err.value) and "wrong" not in str(err.value)
        assert err.value.__cause__ is None or isinstance(err.value.__cause__, psycopg.Error)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns: nothing listens


async def test_two_hosts_enqueueing_one_key_at_once_make_one_message(
    store_target: StoreTarget,
) -> None:
    """Two stores on one database (two hosts, or two tasks) accept the same idempotency keys
    and the same new person at once, 20 times: one message per key, both answers name it; one
    contact per person."""
    first, second = await store_target.open(), await store_target.open()
    try:
        a, b = MessageRepo(first), MessageRepo(second)
        for i in range(20):
            new = NewMessage(
                session="s", from_spec="s", chat_id="1@c.us", body="x", idempotency_key=f"k{i}"
            )
            [(m1, _)], [(m2, _)] = await asyncio.gather(
                a.enqueue_many([new]), b.enqueue_many([new])
            )
            assert m1.id == m2.id
            peer = Peer(f"{i}@c.us", f"{i}@lid")
            c1, c2 = await asyncio.gather(a.contacts.learn(peer), b.contacts.learn(peer))
            assert c1 is not None and c2 is not None and c1.id == c2.id
        row = await first.fetchone("SELECT COUNT(*), COUNT(DISTINCT idempotency_key) FROM outbox")
        assert row is not None and (row[0], row[1]) == (20, 20)
        assert len(await a.contacts.list(session=None, limit=100)) == 0  # no interaction yet
        people = await first.fetchone("SELECT COUNT(*) FROM contacts")
        assert people is not None and people[0] == 20
    finally:
        await first.close()
        await second.close()


async def test_a_cancelled_store_call_ends_its_task(store_target: StoreTarget) -> None:
    """Loops of queries, more than the pool has connections, cancelled at random moments 20
    times: every loop ends. (Python 3.11's wait_for, which the pool waits with, can swallow a
    cancellation that coincides with a connection being handed over; the seam re-raises it.)"""
    rng = random.Random(7)
    async with await store_target.open() as db:

        async def loop() -> None:
            while True:
                await db.fetchone("SELECT COUNT(*) FROM outbox")
                await db.execute("UPDATE sessions SET restarts = 0 WHERE name = 'none'")

        for _ in range(20):
            tasks = [asyncio.ensure_future(loop()) for _ in range(15)]
            await asyncio.sleep(rng.uniform(0.001, 0.03))
            for task in tasks:
                task.cancel()
            async with asyncio.timeout(10):
                await asyncio.gather(*tasks, return_exceptions=True)
            assert all(t.cancelled() for t in tasks)


async def test_for_update_skip_locked_hands_out_disjoint_rows(store_target: StoreTarget) -> None:
    """Two transactions that each take two queued messages `for_update(skip_locked=True)` at
    the same time get four different ones (on SQLite, one after the other)."""
    async with await store_target.open() as db:
        repo = MessageRepo(db)
        for i in range(6):
            await repo.enqueue_many(
                [NewMessage(session=None, from_spec="auto", chat_id="1@c.us", body=str(i))]
            )
        both_in = asyncio.Event()
        taken: list[list[str]] = []

        async def take() -> None:
            async with db.transaction() as tx:
                rows = await tx.fetchall(
                    "SELECT id FROM outbox WHERE state = 'queued' AND session IS NULL ORDER BY id LIMIT 2"
                    + tx.for_update(skip_locked=True)
                )
                ids = [r["id"] for r in rows]
                await tx.execute(
                    f"UPDATE outbox SET session = 'x' WHERE id IN ({', '.join('?' * len(ids))})",
                    ids,
                )
                taken.append(ids)
                if db.kind == "postgres":  # hold the rows until the other has chosen
                    if len(taken) == 2:
                        both_in.set()
                    async with asyncio.timeout(10):
                        await both_in.wait()

        await asyncio.gather(take(), take())
        assert len({i for ids in taken for i in ids}) == 4, taken


async def test_sqlite_statement_is_one_trip_to_the_worker_thread(tmp_path: Path) -> None:
    """Each SQLite statement (its rows or row count, and its cursor's close included) is one
    call on aiosqlite's worker thread; a transaction is its statements plus BEGIN and COMMIT.
    Every trip is a thread hand-off and an event-loop wake-up, which 100 sessions pay for
    each ack and message they store."""
    async with await open_database(tmp_path / "w.db") as db:
        assert isinstance(db, SqliteDatabase)
        trips = 0
        submit = db._tx._submit

        def counted(fn: Callable[[], Any]) -> Awaitable[Any]:
            nonlocal trips
            trips += 1
            return submit(fn)

        db._tx._submit = counted
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        assert trips == 1
        await db.executemany("INSERT INTO t (v) VALUES (?)", [("a",), ("b",)])
        assert trips == 1 + 3  # BEGIN, the statement, COMMIT
        one = await db.fetchone("SELECT * FROM t WHERE v = ?", ("b",))
        rows = await db.fetchall("SELECT v FROM t ORDER BY id")
        changed = await db.execute("UPDATE t SET v = 'c' WHERE v = 'a'")
        assert trips == 4 + 3
        assert one is not None and (one["id"], one["v"]) == (2, "b")
        assert [r["v"] for r in rows] == ["a", "b"] and changed == 1
        with pytest.raises(sqlite3.IntegrityError):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t (id, v) VALUES (1, 'dup')")
        assert trips == 7 + 3  # BEGIN, the failed statement, ROLLBACK
        assert [r[0] for r in await db.fetchall("SELECT v FROM t ORDER BY id")] == ["c", "b"]
