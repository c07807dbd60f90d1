"""What `wasupd check` reads of the store without opening it as the daemon does: the schema
version and the sessions' options, read only, migrating nothing."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from wasupd.errors import StoreError
from wasupd.store.schema import SCHEMA_VERSION

_OPTIONS = "SELECT options FROM sessions"


def _known(version: int) -> bool:
    """Whether this wasupd can read the tables of a store at `version` (a newer one may
    have changed them: only its version is read)."""
    return 0 < version <= SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """The schema version a store records (0: never migrated) and each session's options JSON
    (none read from a store of a newer schema)."""

    version: int
    options: list[str] = field(default_factory=list)


def sqlite_facts(path: Path) -> StoreFacts:
    """The facts of the SQLite file at `path`, opened read only; sqlite3.Error when unreadable."""
    uri = f"file:{path}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as conn:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        rows = conn.execute(_OPTIONS).fetchall() if _known(version) else []
    return StoreFacts(version, [str(r[0] or "{}") for r in rows])


def postgres_facts(url: str) -> StoreFacts:
    """The facts of the PostgreSQL store at `url`; StoreError saying what to check when it
    cannot be reached or read."""
    import psycopg  # here: a SQLite host never loads the driver

    from wasupd.store.backend.postgres import CONNECT_TIMEOUT, connect_error, where

    place = where(url)
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as exc:
        raise connect_error(place, exc) from exc
    try:
        with conn:
            exists = conn.execute("SELECT to_regclass('wasupd_schema') IS NOT NULL").fetchone()
            if not exists or not exists[0]:
                return StoreFacts(0)
            found = conn.execute("SELECT max(version) FROM wasupd_schema").fetchone()
            version = int(found[0]) if found and found[0] is not None else 0
            rows = conn.execute(_OPTIONS).fetchall() if _known(version) else []
    except psycopg.Error as exc:
        raise StoreError(f"{place} cannot be read: {str(exc).strip()}") from exc
    return StoreFacts(version, [str(r[0] or "{}") for r in rows])
