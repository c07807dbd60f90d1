"""Store backends behind one seam (`base.Database`): SQLite (`sqlite`) and PostgreSQL
(`postgres`). `rows.Row` is the row both return; `sql` holds the little translation
PostgreSQL needs of statements written once."""

from __future__ import annotations

from wasupd.store.backend.base import Database, Executor, Kind, Params, Transaction
from wasupd.store.backend.rows import Row

__all__ = ["Database", "Executor", "Kind", "Params", "Row", "Transaction"]
