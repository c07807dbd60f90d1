"""Persistent state: the database (SQLite, or PostgreSQL with `[store] url`) and one typed
repository per concern."""

from __future__ import annotations

from wasupd.store.db import SCHEMA_VERSION, Database

__all__ = ["SCHEMA_VERSION", "Database"]
