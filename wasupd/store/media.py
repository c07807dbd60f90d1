"""The media store: files kept by content under the state directory (`StateLayout.media`).

A file's name is its SHA-256, under a directory of its first two hex digits, so the same bytes
sent a hundred times are stored once and a message refers to them by hash. A file enters the
store by `adopt` (moved in after it was hashed and fsynced, atomically: a crash leaves either
no file or the whole one), and leaves it by `prune` when no message needs it any more.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HASH_BLOCK = 1 << 20
# A file younger than this is never pruned: it may have been adopted by a `message.send`
# whose transaction has not committed yet.
PRUNE_GRACE = 3600.0


@dataclass(frozen=True, slots=True)
class Stored:
    """A file in the store: its SHA-256 (hex) and size."""

    sha256: str
    size: int


class MediaStore:
    """Content-addressed files under `root`; every method is blocking (call it in a thread)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        """Where the file with that hash lives (whether or not it is there)."""
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256 in hex: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        """True when the store holds that content."""
        return self.path(sha256).is_file()

    def scratch(self) -> Path:
        """A fresh temporary path on the store's file system (for `adopt`)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.root / f".tmp-{secrets.token_hex(8)}"

    def adopt(self, src: Path) -> Stored:
        """Move `src` (on the same file system) into the store under its hash, fsynced; the
        same content already there keeps the one copy and `src` is removed."""
        digest, size = _hash(src)
        dest = self.path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if dest.exists():
            src.unlink()
        else:
            os.replace(src, dest)
            _fsync_dir(dest.parent)
        os.utime(dest)  # young again: `prune` leaves it for PRUNE_GRACE
        return Stored(digest, size)

    def hashes(self) -> Iterator[str]:
        """Every hash in the store."""
        if not self.root.is_dir():
            return
        for sub in self.root.iterdir():
            if sub.is_dir() and len(sub.name) == 2:
                yield from (f.name for f in sub.iterdir() if len(f.name) == 64)

    def prune(self, needed: set[str], *, now: float | None = None) -> int:
        """Remove every file no message needs (older than PRUNE_GRACE), and leftover
        temporary files; how many were removed."""
        cutoff = (time.time() if now is None else now) - PRUNE_GRACE
        removed = 0
        for digest in list(self.hashes()):
            path = self.path(digest)
            if digest not in needed and _older(path, cutoff):
                path.unlink(missing_ok=True)
                removed += 1
        for tmp in self.root.glob(".tmp-*") if self.root.is_dir() else []:
            if _older(tmp, cutoff):
                tmp.unlink(missing_ok=True)
        return removed


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False


def _hash(path: Path) -> tuple[str, int]:
    """SHA-256 and size of `path`, which is fsynced on the way."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb+") as fh:
        while block := fh.read(HASH_BLOCK):
            h.update(block)
            size += len(block)
        os.fsync(fh.fileno())
    return h.hexdigest(), size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
