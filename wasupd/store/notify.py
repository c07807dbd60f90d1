"""Wake-ups across hosts: PostgreSQL's NOTIFY, heard with LISTEN on a connection of its own.

`notify(tx, channel, payload)` inside a transaction is delivered when that transaction
commits (and not at all when it rolls back), so a sender woken by it always finds the row
that woke it. A `Listener` keeps one autocommit connection LISTENing; `wait(timeout)` returns
the payloads that arrived, or [] after `timeout`. It never raises for a lost connection: it
waits out `timeout` and reconnects on the next call, and a caller that also polls on its
timeout loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import TYPE_CHECKING

import structlog

from wasupd.store.db import Executor

if TYPE_CHECKING:
    import psycopg

OUTBOX = "wasupd_outbox"  # payload: the session whose outbox has work (or '' for any)
log = structlog.get_logger("wasupd.store")


async def notify(tx: Executor, channel: str, payload: str = "") -> None:
    """NOTIFY `channel` with `payload` when the caller's transaction commits (PostgreSQL)."""
    await tx.execute("SELECT pg_notify(?, ?)", (channel, payload))


class Listener:
    """`async with Listener(url, channel) as heard: await heard.wait(5.0)`."""

    def __init__(self, url: str, channel: str) -> None:
        self.url, self.channel = url, channel
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def __aenter__(self) -> Listener:
        await self._connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        # psycopg is imported where it is used: this module is imported by every daemon, and
        # only a fleet (PostgreSQL) ever builds a Listener.
        import psycopg
        from psycopg import sql

        if self._conn is None or self._conn.closed:
            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self._conn = conn
        return self._conn

    async def wait(self, timeout: float) -> list[str]:
        """The payloads heard within `timeout` s (returns at the first one, with any that
        came with it); [] when none came or the connection is lost (reconnects next time)."""
        import psycopg

        try:
            conn = await self._connect()
            heard = [n.payload async for n in conn.notifies(timeout=timeout, stop_after=1)]
        except psycopg.Error as exc:
            log.warning("listen_lost", channel=self.channel, error=str(exc))
            await self.close()
            await asyncio.sleep(timeout)  # the database is away: try again after the wait
            return []
        return heard

    async def close(self) -> None:
        """Stop listening."""
        if self._conn is not None:
            import psycopg

            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None
