"""The store seam: what the repositories call, whichever engine holds the data.

Every statement is written once, in the subset SQLite and PostgreSQL share (`?` or `:name`
placeholders, `INSERT ... ON CONFLICT DO NOTHING`, `RETURNING`), and every result row is a
`Row`. Outside a transaction each call is its own commit; `transaction()` gives an `Executor`
whose statements commit together (or not at all when the block raises).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Protocol

from wasupd.errors import StoreError
from wasupd.store.backend.rows import Row

Params = Sequence[Any] | Mapping[str, Any]
Kind = Literal["sqlite", "postgres"]


class Executor(Protocol):
    """Statements and queries, inside a transaction or each on its own."""

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """Run one statement once per parameter set."""
        ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of a query (or of a statement's RETURNING), or None."""
        ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of a query (or of a statement's RETURNING)."""
        ...


class Transaction(Executor, Protocol):
    """The statements of one `transaction()` block."""

    async def lock(self, *names: str) -> None:
        """Hold the locks called `names` until this transaction ends: a read-then-write block
        that takes them first runs alone among the blocks that take any of the same locks, on
        every host. They are taken in one fixed order, so blocks whose sets overlap cannot
        deadlock. (SQLite's transactions already run one at a time: there it costs nothing.)"""
        ...

    def for_update(self, *, skip_locked: bool = False) -> str:
        """The clause that ends a SELECT of rows this transaction will change: PostgreSQL's
        ` FOR UPDATE` (with `skip_locked`, ` FOR UPDATE SKIP LOCKED`: rows another
        transaction holds are left out rather than waited for); nothing on SQLite, which
        has no such clause and whose transaction already excludes every other writer."""
        ...


class Database(abc.ABC):
    """An open store: `async with await open_database(...) as db:`. Calls outside
    `transaction()` commit one by one."""

    kind: Kind
    describe: str  # where the data is, for messages: a file, or PostgreSQL's host and db

    @abc.abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement in its own transaction; the number of rows it changed."""

    @abc.abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """Run one statement per parameter set, all in one transaction."""

    @abc.abstractmethod
    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of a query, or None."""

    @abc.abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """All rows of a query."""

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """A block whose statements commit together; rolled back when it raises."""

    @abc.abstractmethod
    async def schema_version(self) -> int:
        """The schema version the database records."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connection(s)."""

    def closing(self) -> None:  # noqa: B027 - a no-op unless the backend can hang
        """The daemon is stopping: a database that stopped answering must not hold the stop
        up (a local SQLite file answers or fails; a server may hang)."""

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def newer_schema(where: str, found: int, supported: int) -> StoreError:
    """The refusal of a database written by a newer wasupd (which is left untouched)."""
    return StoreError(
        f"database {where} has schema version {found}, but this wasupd knows only up to "
        f"{supported}: it was written by a newer wasupd. Upgrade wasupd, or restore a backup "
        "made by this version; the database was left unchanged.",
        found=found,
        supported=supported,
    )
