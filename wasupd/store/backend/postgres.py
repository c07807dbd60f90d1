"""The PostgreSQL backend: psycopg 3 (asyncio) with a pool, the schema version in a table.

A call outside a transaction borrows a connection for one autocommitted statement;
`transaction()` holds one connection for its block. Both are bounded: a server that stops
answering (a partition, a frozen host) neither answers nor fails, and a caller would wait
forever; it gets a StoreError after OP_TIMEOUT (TX_TIMEOUT for a transaction). Once the
daemon is stopping (`closing()`) the bound is CLOSING_TIMEOUT, and after the first call the
server did not answer, every later one fails at once, so a stop with the database gone takes
seconds, not one timeout per write. Migrations run on a connection of their
own under a session advisory lock, so hosts that start together migrate once, one after
the other; a database whose `wasupd_schema` is newer than this wasupd is refused untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from wasupd.errors import StoreError
from wasupd.store.backend.base import Database, Kind, Params, Transaction, newer_schema
from wasupd.store.backend.rows import Row, column_index
from wasupd.store.backend.sql import lock_key, postgres_ddl, to_pyformat

POOL_SIZE = 10  # connections: enough for the daemon's concurrent writers, few for the server
OP_TIMEOUT = 30.0  # s for one statement outside a transaction, the wait for a connection included
TX_TIMEOUT = 120.0  # s for a transaction (a campaign's batch of rows is the largest)
CLOSING_TIMEOUT = 3.0  # s for either once the daemon is stopping
CONNECT_TIMEOUT = 10  # seconds, for the first connection and for the pool to fill
_MIGRATION_LOCK = lock_key("wasupd.schema")

Conn = psycopg.AsyncConnection[Row]


def _rows(cursor: psycopg.AsyncCursor[Any]) -> Callable[[Sequence[Any]], Row]:
    index = column_index(tuple(c.name for c in cursor.description or ()))
    return lambda values: Row(index, values)


def where(url: str) -> str:
    """`url` without its password, for messages: user@host:port/database."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreError(
            f"[store] url is not a PostgreSQL connection URL ({_first_line(exc)}): write it as "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from exc
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    if not all(p.isdigit() for p in str(port).split(",")):
        raise StoreError(
            f"[store] url: the port {port!r} is not a number: write the URL as "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        )
    return f"postgresql://{parts.get('user') or ''}@{host}:{port}/{parts.get('dbname') or ''}"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2]) or type(exc).__name__


def _hint(error: str) -> str:
    if "password authentication failed" in error or "no password supplied" in error:
        return "check the user name and password in [store] url"
    if "does not exist" in error:
        return "create that database and role (createdb, createuser) or correct [store] url"
    return "check that PostgreSQL runs and accepts connections at that host and port"


def connect_error(place: str, exc: psycopg.Error) -> StoreError:
    """A failed connection to `place` as the operator reads it: the server's words and what
    to check (a wrong password, a missing database, no server there)."""
    error = _first_line(exc)
    return StoreError(f"cannot connect to {place}: {error}; {_hint(error)}")


async def _connect(url: str, place: str) -> Conn:
    try:
        return await psycopg.AsyncConnection.connect(
            url, autocommit=True, row_factory=_rows, connect_timeout=CONNECT_TIMEOUT
        )
    except psycopg.Error as exc:
        raise connect_error(place, exc) from exc


class _Tx:
    """Statements on one connection (inside a transaction, or autocommitted)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        cur = await self.conn.execute(to_pyformat(sql), params)
        return cur.rowcount

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        async with self.conn.cursor() as cur:
            await cur.executemany(to_pyformat(sql), rows)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        cur = await self.conn.execute(to_pyformat(sql), params)
        return await cur.fetchone()

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        cur = await self.conn.execute(to_pyformat(sql), params)
        return await cur.fetchall()

    async def lock(self, *names: str) -> None:
        """Transaction-scoped advisory locks, released by the COMMIT or ROLLBACK; taken in
        the order of their keys, in one round trip."""
        keys = sorted({lock_key(name) for name in names})
        if keys:
            await self.conn.execute(
                "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k ORDER BY k",
                (keys,),
            )

    def for_update(self, *, skip_locked: bool = False) -> str:
        """` FOR UPDATE`, or ` FOR UPDATE SKIP LOCKED`."""
        return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"


async def _version(conn: Conn) -> int:
    cur = await conn.execute("SELECT to_regclass('wasupd_schema') IS NOT NULL")
    exists = await cur.fetchone()
    if exists is None or not exists[0]:
        return 0
    cur = await conn.execute("SELECT max(version) FROM wasupd_schema")
    row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


async def _migrate(conn: Conn, migrations: Sequence[str], place: str) -> None:
    await conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
    try:
        found = await _version(conn)  # read under the lock: another host may have migrated
        if found > len(migrations):
            raise newer_schema(place, found, len(migrations))
        for step in range(found, len(migrations)):
            async with conn.transaction():  # DDL is transactional: a step is all or nothing
                await conn.execute(postgres_ddl(migrations[step]))
                await conn.execute("CREATE TABLE IF NOT EXISTS wasupd_schema (version BIGINT)")
                await conn.execute("DELETE FROM wasupd_schema")
                await conn.execute("INSERT INTO wasupd_schema VALUES (%s)", (step + 1,))
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))


class PostgresDatabase(Database):
    """A PostgreSQL database. Use `await PostgresDatabase.open(url, migrations)`."""

    kind: Kind = "postgres"

    def __init__(self, pool: AsyncConnectionPool[Conn], place: str) -> None:
        self.pool = pool
        self.describe = place
        self._closing = False
        self._gone = False  # stopping, and the server did not answer once: fail at once

    def closing(self) -> None:
        """Bound every call by CLOSING_TIMEOUT from now on; after the first that times out,
        fail the rest at once (see the module docstring)."""
        self._closing = True

    @contextlib.asynccontextmanager
    async def _bounded(self, limit: float) -> AsyncIterator[None]:
        """The block within `limit` s (CLOSING_TIMEOUT when stopping), else StoreError.
        psycopg cancels a statement interrupted this way and drops its connection."""
        if self._gone:
            raise StoreError(f"{self.describe} stopped answering; the daemon stops without it")
        limit = CLOSING_TIMEOUT if self._closing else limit
        try:
            async with asyncio.timeout(limit):
                yield
        except TimeoutError:
            if self._closing:
                self._gone = True
            raise StoreError(
                f"{self.describe} did not answer within {limit:g} s: check that the server is"
                " up and reachable from this host"
            ) from None

    @classmethod
    async def open(cls, url: str, migrations: Sequence[str]) -> PostgresDatabase:
        """Connect, migrate (or refuse a newer schema), then open the pool. Every failure to
        reach or log in to the server is a StoreError saying what to check."""
        place = where(url)
        conn = await _connect(url, place)
        try:
            await _migrate(conn, migrations, place)
        finally:
            await conn.close()
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url,
            connection_class=psycopg.AsyncConnection[Row],
            # No server-side prepared statements: a host of the fleet that migrates the schema
            # (a rolling upgrade adds a column) would otherwise break every other host's cached
            # `SELECT *` plans ("cached plan must not change result type").
            kwargs={"autocommit": True, "row_factory": _rows, "prepare_threshold": None},
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            name="wasupd-store",
        )
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except PoolTimeout as exc:
            await pool.close()
            raise StoreError(f"cannot fill the connection pool to {place}: {exc}") from exc
        return cls(pool, place)

    @contextlib.asynccontextmanager
    async def _borrow(self) -> AsyncIterator[Conn]:
        """A pooled connection for the block. The pool waits for a free connection with
        `asyncio.wait_for`, which on Python 3.11 can swallow a cancellation that arrives as
        the connection is handed over; the task would then run on as if never cancelled (a
        loop that is being stopped would never stop). A cancellation requested while we
        waited is raised here instead."""
        task = asyncio.current_task()
        before = task.cancelling() if task is not None else 0
        async with self.pool.connection() as conn:
            if task is not None and task.cancelling() > before:
                raise asyncio.CancelledError
            yield conn

    async def schema_version(self) -> int:
        """The version in `wasupd_schema` (0 for a database wasupd never migrated)."""
        async with self._bounded(OP_TIMEOUT), self._borrow() as conn:
            return await _version(conn)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """BEGIN ... COMMIT on one pooled connection (ROLLBACK when the block raises)."""
        async with self._bounded(TX_TIMEOUT), self._borrow() as conn, conn.transaction():
            yield _Tx(conn)

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self._bounded(OP_TIMEOUT), self._borrow() as conn:
            return await _Tx(conn).execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        async with self._bounded(OP_TIMEOUT), self._borrow() as conn:
            return await _Tx(conn).fetchone(sql, params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._bounded(OP_TIMEOUT), self._borrow() as conn:
            return await _Tx(conn).fetchall(sql, params)

    async def close(self) -> None:
        """Close every pooled connection (bounded: a server gone does not hold it up)."""
        await self.pool.close(timeout=CLOSING_TIMEOUT if self._closing else 5.0)
