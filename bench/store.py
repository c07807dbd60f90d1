"""Enqueue throughput of the two store backends, side by side: SQLite (WAL, synchronous=FULL)
and PostgreSQL (a local durable cluster: fsync and synchronous commits on), each run on a fresh
store, the backends alternating within each run.

Three shapes of `MessageRepo.enqueue_many`, the outbox's accepting path:
- one by one: each message its own transaction (one commit each);
- batched: `--batch` messages per transaction (the daemon's group commit under load);
- 8 writers: eight tasks enqueueing one by one at once (SQLite runs them one after the other;
  PostgreSQL gives each a pooled connection).

    python bench/store.py [--messages 2000] [--batch 50] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import exit_on_sigterm
from tests.helpers.postgres import PgServer, start_server, stop_server
from wasupd.store.db import open_database
from wasupd.store.messages import MessageRepo, NewMessage

WRITERS = 8


def item(i: int) -> NewMessage:
    return NewMessage(
        session="a", from_spec="a", chat_id="15550002222@c.us", body=f"message {i}",
        idempotency_key=f"k{i}",
    )  # fmt: skip


async def one_by_one(repo: MessageRepo, n: int) -> None:
    for i in range(n):
        await repo.enqueue_many([item(i)])


async def batched(repo: MessageRepo, n: int, batch: int) -> None:
    for start in range(0, n, batch):
        await repo.enqueue_many([item(i) for i in range(start, min(n, start + batch))])


async def writers(repo: MessageRepo, n: int) -> None:
    async def writer(w: int) -> None:
        for i in range(w, n, WRITERS):
            await repo.enqueue_many([item(i)])

    await asyncio.gather(*(writer(w) for w in range(WRITERS)))


async def rate(
    path: Path, url: str, run: Callable[[MessageRepo], Awaitable[None]], n: int
) -> float:
    """Messages per second of `run` on a fresh store (PostgreSQL at `url`, else SQLite)."""
    db = await open_database(path, url)
    try:
        t0 = time.perf_counter()
        await run(MessageRepo(db))
        elapsed = time.perf_counter() - t0
        row = await db.fetchone("SELECT COUNT(*) FROM outbox")
        assert row is not None and row[0] == n, row  # every message stored, once
        return n / elapsed
    finally:
        await db.close()


async def main() -> int:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    n = args.messages
    shapes: dict[str, tuple[Callable[[MessageRepo], Awaitable[None]], int]] = {
        "one by one": (lambda r: one_by_one(r, n // 4), n // 4),
        f"batched ({args.batch})": (lambda r: batched(r, n, args.batch), n),
        f"{WRITERS} writers": (lambda r: writers(r, n // 4), n // 4),
    }
    work = Path(tempfile.mkdtemp(prefix="wasupd-bench-store-"))
    server: PgServer = start_server(durable=True)
    try:
        results: dict[tuple[str, str], list[float]] = {}
        for run in range(args.runs):
            for shape, (body, count) in shapes.items():
                order = ["sqlite", "postgres"] if run % 2 == 0 else ["postgres", "sqlite"]
                for backend in order:
                    with server.fresh_db() as name:
                        url = server.url(name) if backend == "postgres" else ""
                        value = await rate(work / f"{run}-{backend}.db", url, body, count)
                        results.setdefault((shape, backend), []).append(value)
                        for leftover in work.glob(f"{run}-{backend}.db*"):
                            leftover.unlink()
        print(f"enqueue throughput, messages/s, medians of {args.runs} interleaved runs")
        print(f"{'shape':<14} {'SQLite':>9} {'PostgreSQL':>11} {'PG / SQLite':>12}")
        for shape in shapes:
            lite = statistics.median(results[(shape, "sqlite")])
            pg = statistics.median(results[(shape, "postgres")])
            print(f"{shape:<14} {lite:>9.0f} {pg:>11.0f} {pg / lite:>11.2f}x")
        return 0
    finally:
        stop_server(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
