"""The SQLite store: migrations, refusal of newer schemas, and the sessions repository."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from wasupd.errors import SessionExists, SessionNotFound, StoreError
from wasupd.store.db import SCHEMA_VERSION, Database
from wasupd.store.sessions import SessionRepo


async def test_new_database_is_migrated_and_in_wal(tmp_path: Path) -> None:
    """A new file gets the current schema version and WAL journaling."""
    db = await Database.open(tmp_path / "w.db")
    try:
        assert await db.user_version() == SCHEMA_VERSION
        row = await db.fetchone("PRAGMA journal_mode")
        assert row is not None and row[0] == "wal"
    finally:
        await db.close()


async def test_newer_schema_is_refused_and_untouched(tmp_path: Path) -> None:
    """A database from a newer wasupd is refused with a clear message and left byte-identical."""
    path = tmp_path / "w.db"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="written by a newer wasupd"):
        await Database.open(path)
    assert path.read_bytes() == before


async def test_sessions_repo_round_trip(tmp_path: Path) -> None:
    """Create, transition with history, duplicates and unknown names behave as documented."""
    db = await Database.open(tmp_path / "w.db")
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
