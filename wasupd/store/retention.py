"""Retention: what a daemon that runs for months must forget, so the database stays small.

Every `RETENTION_INTERVAL`, records that are finished and older than `daemon.retention_days`
are deleted: outgoing messages in a final state, received messages, webhook deliveries that
were delivered or given up, contacts and their per-session statistics (which reply
stickiness reads), and state history (the newest
`HISTORY_KEPT` transitions of each session stay, however old). Nothing in flight is touched:
queued and sending messages, pending deliveries. Deletes go in batches of `BATCH` rows, each its
own short transaction, so a send or an ack never waits long behind them.

What forgetting means for callers: `message.get` of a pruned id says not found, and an
idempotency key is remembered for `retention_days` (a repeat after that is a new message).
Pacing needs the last day of sends, hence the minimum of 2 days (config validation).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from wasupd.store.db import Database
from wasupd.store.media import MediaStore

log = structlog.get_logger("wasupd.store")

DAY = 86400.0
BATCH = 2000
HISTORY_KEPT = 20
FIRST_DELAY = 300.0  # not during the start-up stampede of a restore
RETENTION_INTERVAL = 6 * 3600.0

# table -> (its key, which of its rows are finished and older than :cutoff). Each is found
# through an index on its time column (schemas 3 and 4); `state || ''` keeps SQLite from walking
# the state index instead, which would rescan every recent finished row at each batch (an
# expression, not the column: in the form PostgreSQL accepts too, unlike SQLite's unary `+`).
RULES: dict[str, tuple[str, str]] = {
    "outbox": (
        "id",
        "state || '' IN ('sent', 'delivered', 'read', 'failed', 'cancelled')"
        " AND updated_at < :cutoff",
    ),
    "inbox": ("id", "received_at < :cutoff"),
    "webhook_deliveries": (
        "id",
        "state || '' IN ('delivered', 'failed') AND updated_at < :cutoff",
    ),
    # A contact's per-session statistics go with its last interaction there; the contact
    # itself (its number <-> LID mapping) once no session has talked to it in that time.
    "contact_sessions": ("contact_id, session", "last_at < :cutoff"),
    "contacts": (
        "id",
        "updated_at < :cutoff AND NOT EXISTS (SELECT 1 FROM contact_sessions AS s"
        " WHERE s.contact_id = contacts.id)",
    ),
    "session_history": (
        "id",
        "at < :cutoff AND id NOT IN (SELECT h.id FROM session_history AS h"
        " WHERE h.session = session_history.session ORDER BY h.id DESC LIMIT :kept)",
    ),
}


async def prune(db: Database, cutoff: float, batch: int = BATCH) -> dict[str, int]:
    """Delete what `RULES` select with `cutoff` (unix time); rows deleted per table."""
    counts: dict[str, int] = {}
    for table, (key, where) in RULES.items():
        total = 0
        while True:
            # Table names, keys and conditions are the constants above; values go as parameters.
            sql = f"DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {where}"  # noqa: S608
            n = await db.execute(
                sql + " LIMIT :batch)",
                {"cutoff": cutoff, "batch": batch, "kept": HISTORY_KEPT},
            )
            total += n
            if n < batch:
                break
            await asyncio.sleep(0)  # writers queued behind the lock go first
        counts[table] = total
    return counts


# Which files of the media store messages still need: outgoing files (whatever their state:
# the row goes with retention, and then its file), received files that were fetched, and
# campaigns' files (queued in batches).
MEDIA_NEEDED = (
    "SELECT media_sha256 FROM outbox WHERE media_sha256 IS NOT NULL UNION"
    " SELECT media_sha256 FROM inbox WHERE media_sha256 IS NOT NULL AND media_stored = 1"
)
# A campaign's file is in its `media` JSON; read here, as the engines' JSON functions differ.
CAMPAIGN_MEDIA = "SELECT media FROM campaigns WHERE media != ''"
UPLOAD_MAX_AGE = DAY  # an upload no `message.send` took within a day is abandoned


async def prune_media(
    db: Database, store: MediaStore, uploads: Path, *, now: float | None = None
) -> int:
    """Remove the media store's files no message needs, and abandoned uploads; how many
    files of the store were removed. Runs after `prune`, so files of pruned messages go."""
    now = time.time() if now is None else now
    needed = {str(r[0]) for r in await db.fetchall(MEDIA_NEEDED)}
    for r in await db.fetchall(CAMPAIGN_MEDIA):
        needed.add(str(json.loads(r[0]).get("sha256")))
    removed = await asyncio.to_thread(store.prune, needed, now=now)
    await asyncio.to_thread(_drop_stale_uploads, uploads, now - UPLOAD_MAX_AGE)
    return removed


def _drop_stale_uploads(uploads: Path, cutoff: float) -> None:
    for part in uploads.glob("*.part") if uploads.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            if part.stat().st_mtime < cutoff:
                part.unlink()


async def run(
    db: Database,
    days: Callable[[], float],
    *,
    media: tuple[MediaStore, Path] | None = None,
    first_delay: float = FIRST_DELAY,
    interval: float = RETENTION_INTERVAL,
    clock: Callable[[], float] = time.time,
) -> None:
    """Prune every `interval` seconds with the current `days()` (0: keep everything), then
    the media store (`media`: the store and the uploads directory), until cancelled. A
    failed round is logged and retried at the next one."""
    await asyncio.sleep(first_delay)
    while True:
        keep = days()
        if media is not None:
            try:
                files = await prune_media(db, *media, now=clock())
            except Exception:
                log.exception("media_retention_failed")
            else:
                if files:
                    log.info("media_pruned", files=files)
        if keep > 0:
            try:
                counts = await prune(db, clock() - keep * DAY)
            except Exception:
                log.exception("retention_failed")
            else:
                if any(counts.values()):
                    log.info("retention_pruned", days=keep, **counts)
        await asyncio.sleep(interval)
