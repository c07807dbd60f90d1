"""Where the daemon's own memory goes, and giving freed memory back to the system.

A daemon that runs for months must not creep. Its resident memory is Python's objects, the
C allocator's heap under them (glibc malloc: what is in use, and what is free but still
held, the fragmentation a long run leaves), and SQLite's page cache. `usage()` reads each,
so that a growth can be told apart: objects that pile up (a leak), a cache filling to its
bound, or free memory malloc keeps. `Trimmer.run` calls glibc's `malloc_trim(0)` now and
then, which hands free pages of every arena back to the kernel (documented in
malloc_trim(3)); without it a burst of work leaves its peak resident for good.

Both read glibc and SQLite through ctypes: `mallinfo2` (glibc 2.33 and later) and
`sqlite3_memory_used` of the SQLite library the `sqlite3` module loaded. Where either is
missing (another libc, a statically linked SQLite), its figures are None and trimming does
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
import structlog

TRIM_INTERVAL = 300.0  # seconds between trims: each takes about a millisecond for this heap
log = structlog.get_logger("wasupd.heap")


class _Mallinfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (malloc.h): every field a size_t."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes of the main arena's heap (sbrk)
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in mmap'ed blocks
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in use
            "fordblks",  # bytes free, still held
            "keepcost",
        )
    ]


def _libc() -> Any:
    with contextlib.suppress(OSError):
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return None


def _libsqlite() -> Any:
    # The library the sqlite3 module already loaded: dlopen hands back that same instance,
    # so its counters are the daemon's.
    for name in (ctypes.util.find_library("sqlite3"), "libsqlite3.so.0"):
        if name:
            with contextlib.suppress(OSError):
                lib = ctypes.CDLL(name)
                lib.sqlite3_memory_used.restype = ctypes.c_int64
                return lib
    return None


_LIBC = _libc()
_MALLINFO2 = getattr(_LIBC, "mallinfo2", None)
if _MALLINFO2 is not None:
    _MALLINFO2.restype = _Mallinfo2
_TRIM = getattr(_LIBC, "malloc_trim", None)
_SQLITE = _libsqlite()


def usage() -> dict[str, int | None]:
    """The daemon's memory by owner, in bytes: `rss`; `python_blocks` (objects Python has
    allocated: a count, not bytes); `malloc_in_use` and `malloc_free` (held by glibc malloc
    and not in use), `malloc_mmap` (large blocks mapped on their own); `sqlite` (SQLite's
    page cache and the rest of its heap). None where this system cannot tell."""
    out: dict[str, int | None] = {
        "rss": psutil.Process().memory_info().rss,
        "python_blocks": sys.getallocatedblocks(),
        "malloc_in_use": None,
        "malloc_free": None,
        "malloc_mmap": None,
        "sqlite": None,
    }
    if _MALLINFO2 is not None:
        info = _MALLINFO2()
        out["malloc_in_use"] = int(info.uordblks)
        out["malloc_free"] = int(info.fordblks)
        out["malloc_mmap"] = int(info.hblkhd)
    if _SQLITE is not None:
        out["sqlite"] = int(_SQLITE.sqlite3_memory_used())
    return out


def trim() -> bool:
    """Give malloc's free pages back to the kernel (`malloc_trim(0)`); True if any went."""
    return bool(_TRIM(0)) if _TRIM is not None else False


class Trimmer:
    """Trims every `interval` seconds while `run()` runs (a loop the daemon keeps)."""

    def __init__(
        self,
        interval: float = TRIM_INTERVAL,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval, self._sleep = interval, sleep
        self.trims = 0  # trims that gave memory back

    async def run(self) -> None:
        """Trim until cancelled; logs what each trim gave back, at debug level."""
        me = psutil.Process()
        while True:
            await self._sleep(self.interval)
            before = me.memory_info().rss
            if trim():
                self.trims += 1
                log.debug("malloc_trimmed", freed_bytes=before - me.memory_info().rss)
