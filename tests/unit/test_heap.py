"""The daemon's memory by owner, and the trims that give free memory back (wasupd.heap)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

import psutil

from wasupd import heap

MB = 1 << 20


def test_usage_tells_malloc_and_sqlite_apart_on_this_system() -> None:
    """Debian's glibc has mallinfo2 and its SQLite is a shared library: every figure is
    known, and SQLite's own counter moves when a connection caches pages."""
    before = heap.usage()
    assert all(isinstance(v, int) for v in before.values()), before
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 200,)] * 5000)
    after = heap.usage()
    assert after["sqlite"] is not None and before["sqlite"] is not None
    assert after["sqlite"] > before["sqlite"] + 500_000
    conn.close()
    assert heap.usage()["sqlite"] < after["sqlite"]  # (its heap freed with the connection)


def test_a_trim_gives_freed_memory_back() -> None:
    """80 MB of malloc'ed blocks freed with every 16th kept: the holes stay resident (free
    cannot shrink a heap with live blocks above them) until a trim hands their pages back."""
    me = psutil.Process()
    blocks = [bytearray(4000) for _ in range(20_000)]  # above obmalloc's 512 bytes: malloc
    keep = blocks[::16]
    del blocks
    held = heap.usage()["malloc_free"]
    assert held is not None and held > 50 * MB
    before = me.memory_info().rss
    assert heap.trim() is True
    assert me.memory_info().rss < before - 40 * MB
    assert len(keep) == 1250


def test_the_trimmer_trims_every_interval() -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) > 3:
            raise asyncio.CancelledError

    trimmer = heap.Trimmer(interval=7.0, sleep=sleep)
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(trimmer.run())
    assert sleeps == [7.0] * 4
