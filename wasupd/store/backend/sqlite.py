"""The SQLite backend: one aiosqlite connection, WAL, `PRAGMA user_version` migrations.

One connection is shared by every task, so writers take a lock: a transaction must not
interleave with another task's statements. `BEGIN IMMEDIATE` takes SQLite's write lock at the
start of a block, which makes every block run alone (what `Transaction.lock` asks for).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from wasupd.errors import StoreError
from wasupd.store.backend.base import Database, Kind, Params, Transaction, newer_schema
from wasupd.store.backend.rows import Row, column_index


def _row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Row:
    return Row(column_index(tuple(d[0] for d in cursor.description)), values)


class _Tx:
    """The statements of one `BEGIN IMMEDIATE` block, on the shared connection."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        cur = await self.conn.execute(sql, params)
        count = cur.rowcount
        await cur.close()
        return count

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self.conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        async with self.conn.execute(sql, params) as cur:
            row: Row | None = await cur.fetchone()  # type: ignore[assignment]  # row_factory
            return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        async with self.conn.execute(sql, params) as cur:
            return list(await cur.fetchall())  # type: ignore[arg-type]  # row_factory

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
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._tx
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
            await self.conn.execute("COMMIT")

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
