"""The SQLite backend: one aiosqlite connection, WAL, `PRAGMA user_version` migrations.

One connection is shared by every task, so writers take a lock: a transaction must not
interleave with another task's statements. `BEGIN IMMEDIATE` takes SQLite's write lock at the
start of a block, which makes every block run alone (what `Transaction.lock` asks for).

Each statement is one trip to aiosqlite's worker thread: the statement, its rows (or its row
count) and closing its cursor run there as one call. aiosqlite's own cursor API takes a trip
for each of those steps, and every trip is a thread hand-off and a wake-up of the event loop:
with 100 sessions acking and receiving messages, one trip instead of three made a SELECT cost
29 instead of 68 us of CPU (docs/benchmarks.md, "Capacity: 100 linked sessions").
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from wasupd.errors import StoreError
from wasupd.store.backend.base import Database, Kind, Params, Transaction, newer_schema
from wasupd.store.backend.rows import Row, column_index

T = TypeVar("T")


def _row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Row:
    return Row(column_index(tuple(d[0] for d in cursor.description)), values)


class _Tx:
    """The statements of one `BEGIN IMMEDIATE` block, on the shared connection."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        # aiosqlite's queue to its worker thread: the one way to run several sqlite3 calls
        # in one trip (its public methods make one trip per call, cursors included).
        self._submit = cast(Callable[..., Awaitable[Any]], conn._execute)

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> Awaitable[T]:
        """`fn` on the worker thread, with the sqlite3 connection (which lives there)."""
        return cast(Awaitable[T], self._submit(lambda: fn(self.conn._conn)))

    async def execute(self, sql: str, params: Params = ()) -> int:
        def run(db: sqlite3.Connection) -> int:
            cur = db.execute(sql, params)
            try:
                return cur.rowcount
            finally:
                cur.close()

        return await self._run(run)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.executemany(sql, rows).close()

        await self._run(run)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        def run(db: sqlite3.Connection) -> Row | None:
            cur = db.execute(sql, params)
            try:
                return cast(Row | None, cur.fetchone())  # the connection's row_factory
            finally:
                cur.close()

        return await self._run(run)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        def run(db: sqlite3.Connection) -> list[Row]:
            cur = db.execute(sql, params)
            try:
                return cast(list[Row], cur.fetchall())  # the connection's row_factory
            finally:
                cur.close()

        return await self._run(run)

    async def lock(self, *names: str) -> None:
        """Nothing to do: the block holds SQLite's one write lock since BEGIN IMMEDIATE."""

    def for_update(self, *, skip_locked: bool = False) -> str:
        """Nothing: SQLite has no row locks, and this block already excludes other writers."""
        return ""


class SqliteDatabase(Database):
    """The database file at `path`. Use `await SqliteDatabase.open(path, migrations)`."""

    kind: Kind = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self.describe = str(path)
        self._tx = _Tx(conn)
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, migrations: Sequence[str]) -> SqliteDatabase:
        """Open (creating if needed) and migrate the database at `path`; a file written by a
        newer wasupd is refused before anything could rewrite it."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
        except Exception as exc:  # sqlite3.OperationalError and friends
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        conn.row_factory = _row  # type: ignore[assignment]  # aiosqlite types only sqlite3.Row
        db = cls(conn, path)
        try:
            found = await db.schema_version()  # before any pragma that could rewrite the file
            if found > len(migrations):
                raise newer_schema(str(path), found, len(migrations))
            await db._configure()
            await db._migrate(migrations)
        except BaseException:
            await conn.close()
            raise
        return db

    async def _configure(self) -> None:
        await self.conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit survives power loss, not just a crash of this process.
        await self.conn.execute("PRAGMA synchronous=FULL")
        await self.conn.execute("PRAGMA foreign_keys=ON")
        await self.conn.execute("PRAGMA busy_timeout=5000")

    async def _migrate(self, migrations: Sequence[str]) -> None:
        for step in range(await self.schema_version(), len(migrations)):
            # executescript commits first, so wrap each step explicitly.
            await self.conn.executescript(
                f"BEGIN IMMEDIATE;\n{migrations[step]}\nPRAGMA user_version={step + 1};\nCOMMIT;"
            )

    async def schema_version(self) -> int:
        """`PRAGMA user_version`."""
        row = await self._tx.fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """`BEGIN IMMEDIATE` ... `COMMIT` (ROLLBACK on error), alone among this process's tasks."""
        async with self._write_lock:
            await self._tx.execute("BEGIN IMMEDIATE")
            try:
                yield self._tx
            except BaseException:
                await self._tx.execute("ROLLBACK")
                raise
            await self._tx.execute("COMMIT")

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self._write_lock:
            return await self._tx.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return await self._tx.fetchone(sql, params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._tx.fetchall(sql, params)

    async def close(self) -> None:
        """Close the connection (checkpointing the WAL)."""
        await self.conn.close()
