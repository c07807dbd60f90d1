"""Opening the store: SQLite at `state.database` by default, PostgreSQL when `[store] url`
names a server. Both get the same migrations (`store/schema.py`) and give the repositories
the same seam (`store/backend`)."""

from __future__ import annotations

from pathlib import Path

from wasupd.store.backend import Database, Executor, Row, Transaction
from wasupd.store.backend.sqlite import SqliteDatabase
from wasupd.store.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Database",
    "Executor",
    "Row",
    "Transaction",
    "open_database",
]


async def open_database(path: Path, url: str = "") -> Database:
    """The store: PostgreSQL at `url` when one is given, else the SQLite file at `path`;
    migrated to `SCHEMA_VERSION`. StoreError when it cannot be used, saying what to check."""
    if url:
        # Imported only here: psycopg and its pool cost a daemon on SQLite (the default) about
        # 11 MiB of RSS it would never use (docs/chromium.md, "Memory: what is left").
        from wasupd.store.backend.postgres import PostgresDatabase

        return await PostgresDatabase.open(url, MIGRATIONS)
    return await SqliteDatabase.open(path, MIGRATIONS)
