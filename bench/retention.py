"""Retention cost: how long one delete batch holds the database's write lock (a send or an ack
waits at most that long), with the time indexes of schema 3 against the plan before them (the
state index, which rescans every recent finished row at each batch), side by side on the same
data in the same run.

    python bench/retention.py [--rows 400000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import exit_on_sigterm
from wasupd.store import retention
from wasupd.store.db import open_database

NOW = 2_000_000_000.0
# The outbox rule as it was before schema 3: SQLite picks the state index for it.
BEFORE = "state IN ('sent', 'delivered', 'read', 'failed', 'cancelled') AND updated_at < :cutoff"


async def make_db(path: Path, rows: int) -> None:
    """An outbox of `rows` finished messages from 50 sessions, half older than the cutoff."""
    db = await open_database(path)
    await db.close()
    old, recent = NOW - 100 * retention.DAY, NOW - retention.DAY
    con = sqlite3.connect(path)
    con.executemany(
        "INSERT INTO outbox (id, session, from_spec, chat_id, body, state, created_at,"
        " updated_at, sent_at) VALUES (?, ?, 'auto', 'c', 'a message body', 'read', ?, ?, ?)",
        ((f"m{i}", f"s{i % 50}", t, t, t) for i in range(rows) for t in [old if i % 2 else recent]),
    )
    con.commit()
    con.close()


async def measure(path: Path, rules: dict[str, str]) -> dict[str, float]:
    """Prune the outbox with `rules`; batch times and the total."""
    db = await open_database(path)
    times: list[float] = []
    execute = db.execute

    async def timed(sql: str, params: Any = ()) -> int:
        t0 = time.perf_counter()
        n = await execute(sql, params)
        times.append(time.perf_counter() - t0)
        return n

    db.execute = timed  # type: ignore[method-assign]
    saved = retention.RULES
    retention.RULES = rules
    try:
        t0 = time.perf_counter()
        counts = await retention.prune(db, NOW - 90 * retention.DAY)
        total = time.perf_counter() - t0
    finally:
        retention.RULES = saved
        await db.close()
    return {
        "deleted": counts["outbox"],
        "batches": len(times),
        "median_ms": statistics.median(times) * 1000,
        "max_ms": max(times) * 1000,
        "total_s": total,
    }


async def main() -> int:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wasupd-bench-retention-"))
    try:
        template = work / "template.db"
        await make_db(template, args.rows)
        results: dict[str, list[dict[str, float]]] = {"time index": [], "state index": []}
        for _ in range(args.runs):
            for name, rules, drop in (
                ("time index", {"outbox": retention.RULES["outbox"]}, False),
                ("state index", {"outbox": ("id", BEFORE)}, True),
            ):
                db = work / f"{name.replace(' ', '-')}.db"
                shutil.copy(template, db)
                if drop:
                    con = sqlite3.connect(db)
                    con.execute("DROP INDEX outbox_by_updated")
                    con.close()
                results[name].append(await measure(db, rules))
                db.unlink()
        print(f"outbox of {args.rows} finished messages, half older than the cutoff;")
        print(f"medians of {args.runs} runs, batch = {retention.BATCH} rows")
        print(f"{'plan':<12} {'batches':>8} {'batch median':>13} {'batch max':>10} {'total':>8}")
        med: dict[str, dict[str, float]] = {}
        for name, runs in results.items():
            med[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            m = med[name]
            print(
                f"{name:<12} {m['batches']:>8.0f} {m['median_ms']:>10.1f} ms"
                f" {m['max_ms']:>7.1f} ms {m['total_s']:>6.2f} s"
            )
        ratio = med["state index"]["median_ms"] / med["time index"]["median_ms"]
        print(f"batch median: the time index is {ratio:.1f}x faster than the state index plan")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
