"""The SQLite database: one aiosqlite connection, WAL, versioned migrations.

`PRAGMA user_version` records the schema version. Opening a database written by a newer
wasupd raises `StoreError` and leaves the file untouched; an older one is migrated forward
inside one transaction per step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from wasupd.errors import StoreError

# Each entry upgrades the schema from version i to i + 1. Append only; never edit a shipped step.
MIGRATIONS: list[str] = [
    # 1: sessions and their state history; the message tables of the outbox, inbox and webhooks.
    """
    CREATE TABLE sessions (
        name        TEXT PRIMARY KEY,
        phone       TEXT,
        me          TEXT,
        state       TEXT NOT NULL,
        reason      TEXT NOT NULL DEFAULT '',
        desired     TEXT NOT NULL DEFAULT 'stopped',
        options     TEXT NOT NULL DEFAULT '{}',
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        linked_at   REAL,
        restarts    INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE session_history (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        session     TEXT NOT NULL,
        at          REAL NOT NULL,
        from_state  TEXT NOT NULL,
        to_state    TEXT NOT NULL,
        reason      TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX session_history_by_session ON session_history(session, id);
    CREATE TABLE outbox (
        id              TEXT PRIMARY KEY,
        session         TEXT,
        from_spec       TEXT NOT NULL,
        chat_id         TEXT NOT NULL,
        body            TEXT NOT NULL,
        idempotency_key TEXT UNIQUE,
        state           TEXT NOT NULL,
        wa_id           TEXT,
        attempts        INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT NOT NULL DEFAULT '',
        not_before      REAL NOT NULL DEFAULT 0,
        wait_reason     TEXT NOT NULL DEFAULT '',
        created_at      REAL NOT NULL,
        updated_at      REAL NOT NULL,
        sent_at         REAL,
        delivered_at    REAL,
        read_at         REAL
    );
    CREATE INDEX outbox_by_state ON outbox(state, session, created_at);
    CREATE INDEX outbox_by_wa_id ON outbox(wa_id);
    CREATE TABLE inbox (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        session     TEXT NOT NULL,
        wa_id       TEXT NOT NULL,
        chat_id     TEXT NOT NULL,
        sender      TEXT NOT NULL,
        body        TEXT NOT NULL,
        type        TEXT NOT NULL DEFAULT 'chat',
        t           REAL NOT NULL,
        received_at REAL NOT NULL,
        UNIQUE(session, wa_id)
    );
    CREATE TABLE contacts (
        chat_id     TEXT NOT NULL,
        session     TEXT NOT NULL,
        last_at     REAL NOT NULL,
        PRIMARY KEY (chat_id, session)
    );
    CREATE TABLE webhook_deliveries (
        id          TEXT PRIMARY KEY,
        url         TEXT NOT NULL,
        event       TEXT NOT NULL,
        payload     TEXT NOT NULL,
        state       TEXT NOT NULL DEFAULT 'pending',
        attempts    INTEGER NOT NULL DEFAULT 0,
        next_at     REAL NOT NULL DEFAULT 0,
        last_status INTEGER,
        last_error  TEXT NOT NULL DEFAULT '',
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(state, next_at);
    """,
    # 2: indexes for pacing (a session's sends by time) and reply stickiness (messages by chat).
    """
    CREATE INDEX outbox_by_session_sent ON outbox(session, sent_at);
    CREATE INDEX outbox_by_chat ON outbox(chat_id, created_at);
    """,
    # 3: indexes for retention (wasupd.store.retention): each batch finds old rows by time
    # instead of scanning every recent one.
    """
    CREATE INDEX outbox_by_updated ON outbox(updated_at);
    CREATE INDEX inbox_by_received ON inbox(received_at);
    CREATE INDEX webhook_deliveries_by_updated ON webhook_deliveries(updated_at);
    CREATE INDEX contacts_by_last ON contacts(last_at);
    CREATE INDEX session_history_by_at ON session_history(at);
    """,
    # 4: contacts by person (LID addressing): a phone number id and/or a LID, the push name;
    # per session the first and last interaction and the messages in and out. Folds in the
    # reply-stickiness rows of schema 1 (their group rows are not people: stickiness for a
    # group reads the inbox and outbox, which hold the same history). Inbox rows carry the
    # sender's number and LID ids.
    """
    ALTER TABLE contacts RENAME TO contacts_v1;
    DROP INDEX contacts_by_last;
    CREATE TABLE contacts (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        pn          TEXT UNIQUE,
        lid         TEXT UNIQUE,
        push_name   TEXT NOT NULL DEFAULT '',
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        CHECK (pn IS NOT NULL OR lid IS NOT NULL)
    );
    CREATE INDEX contacts_by_updated ON contacts(updated_at);
    CREATE TABLE contact_sessions (
        contact_id  INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
        session     TEXT NOT NULL,
        first_at    REAL NOT NULL,
        last_at     REAL NOT NULL,
        msgs_in     INTEGER NOT NULL DEFAULT 0,
        msgs_out    INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (contact_id, session)
    );
    CREATE INDEX contact_sessions_by_last ON contact_sessions(last_at);
    CREATE INDEX contact_sessions_by_session ON contact_sessions(session, last_at);
    INSERT INTO contacts (pn, created_at, updated_at)
        SELECT chat_id, MIN(last_at), MAX(last_at) FROM contacts_v1
        WHERE chat_id LIKE '%@c.us' GROUP BY chat_id;
    INSERT INTO contact_sessions (contact_id, session, first_at, last_at)
        SELECT c.id, v.session, v.last_at, v.last_at FROM contacts_v1 AS v
        JOIN contacts AS c ON c.pn = v.chat_id;
    DROP TABLE contacts_v1;
    ALTER TABLE inbox ADD COLUMN sender_pn TEXT;
    ALTER TABLE inbox ADD COLUMN sender_lid TEXT;
    ALTER TABLE inbox ADD COLUMN push_name TEXT NOT NULL DEFAULT '';
    UPDATE inbox SET sender_pn = sender WHERE sender LIKE '%@c.us';
    CREATE INDEX inbox_by_sender_lid ON inbox(sender_lid);
    CREATE INDEX inbox_by_chat ON inbox(chat_id, received_at);
    """,
    # 5: campaigns (one text to many recipients), each recipient's number, planned time and
    # outbox message; the opt-out suppression list.
    """
    CREATE TABLE campaigns (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT NOT NULL UNIQUE,
        state       TEXT NOT NULL,
        body        TEXT NOT NULL,
        numbers     TEXT NOT NULL DEFAULT '[]',
        pinned      INTEGER NOT NULL DEFAULT 0,
        send_window TEXT NOT NULL DEFAULT '',
        start_at    REAL,
        until       REAL,
        plan        TEXT NOT NULL DEFAULT '{}',
        errors      INTEGER NOT NULL DEFAULT 0,
        paused_at   REAL,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE TABLE campaign_recipients (
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
        recipient   TEXT NOT NULL,
        line        INTEGER NOT NULL,
        phone       TEXT NOT NULL,
        vars        TEXT NOT NULL DEFAULT '{}',
        session     TEXT,
        planned_at  REAL,
        message_id  TEXT,
        state       TEXT NOT NULL DEFAULT 'pending',
        handed_over INTEGER NOT NULL DEFAULT 0,
        replied_at  REAL,
        PRIMARY KEY (campaign_id, recipient)
    );
    CREATE INDEX campaign_recipients_by_line ON campaign_recipients(campaign_id, line);
    CREATE INDEX campaign_recipients_by_message ON campaign_recipients(message_id);
    CREATE INDEX campaign_recipients_by_recipient ON campaign_recipients(recipient);
    CREATE TABLE suppressions (
        chat_id     TEXT PRIMARY KEY,
        source      TEXT NOT NULL DEFAULT '',
        created_at  REAL NOT NULL
    );
    """,
    # 6: media. An outbox message may carry a file of the media store (by SHA-256; its body
    # is the caption); an inbox row says what file a received message has and whether its
    # bytes were fetched into the store; a campaign may send one file to every recipient
    # (its MediaRef as JSON, '' for text). Indexes for retention (which files are needed).
    """
    ALTER TABLE outbox ADD COLUMN media_sha256 TEXT;
    ALTER TABLE outbox ADD COLUMN media_kind TEXT;
    ALTER TABLE outbox ADD COLUMN media_mime TEXT;
    ALTER TABLE outbox ADD COLUMN media_size INTEGER;
    ALTER TABLE outbox ADD COLUMN media_name TEXT;
    CREATE INDEX outbox_by_media ON outbox(media_sha256) WHERE media_sha256 IS NOT NULL;
    ALTER TABLE inbox ADD COLUMN media_kind TEXT;
    ALTER TABLE inbox ADD COLUMN media_mime TEXT;
    ALTER TABLE inbox ADD COLUMN media_size INTEGER;
    ALTER TABLE inbox ADD COLUMN media_name TEXT;
    ALTER TABLE inbox ADD COLUMN media_sha256 TEXT;
    ALTER TABLE inbox ADD COLUMN media_stored INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX inbox_by_media ON inbox(media_sha256) WHERE media_sha256 IS NOT NULL;
    ALTER TABLE campaigns ADD COLUMN media TEXT NOT NULL DEFAULT '';
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


class Database:
    """Owns the aiosqlite connection. Use `async with Database.open(path) as db:`."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        # One connection is shared by every task: a transaction must not interleave with
        # another task's statements, so writers take this lock (reads need not).
        self._write_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """`BEGIN IMMEDIATE` ... `COMMIT` (ROLLBACK on error), exclusive among this process's tasks."""
        async with self._write_lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
            await self.conn.execute("COMMIT")

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Open (creating if needed) and migrate the database at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
        except Exception as exc:  # sqlite3.OperationalError and friends
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        conn.row_factory = aiosqlite.Row
        db = cls(conn, path)
        try:
            await db._refuse_newer()  # before any pragma that could rewrite the file
            await db._configure()
            await db._migrate()
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

    async def user_version(self) -> int:
        """The schema version recorded in the file."""
        async with self.conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _refuse_newer(self) -> None:
        version = await self.user_version()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"database {self.path} has schema version {version}, but this wasupd knows only "
                f"up to {SCHEMA_VERSION}: it was written by a newer wasupd. Upgrade wasupd, or "
                "restore a backup made by this version; the file was left unchanged.",
                found=version,
                supported=SCHEMA_VERSION,
            )

    async def _migrate(self) -> None:
        version = await self.user_version()
        for step in range(version, SCHEMA_VERSION):
            # executescript commits first, so wrap each step explicitly.
            await self.conn.executescript(
                f"BEGIN IMMEDIATE;\n{MIGRATIONS[step]}\nPRAGMA user_version={step + 1};\nCOMMIT;"
            )

    async def execute(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> int:
        """Run one statement in its own transaction; returns the number of rows changed."""
        async with self._write_lock:
            cur = await self.conn.execute(sql, params)
            count = cur.rowcount
            await cur.close()
        return count

    async def fetchall(
        self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()
    ) -> list[aiosqlite.Row]:
        """All rows of a query."""
        async with self.conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def fetchone(
        self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()
    ) -> aiosqlite.Row | None:
        """The first row of a query, or None."""
        async with self.conn.execute(sql, params) as cur:
            return await cur.fetchone()

    async def close(self) -> None:
        """Close the connection (checkpointing the WAL)."""
        await self.conn.close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
