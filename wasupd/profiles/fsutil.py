"""Small filesystem helpers with crash-safety contracts (atomic replace, atomic removal)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """fsync a directory so that a rename or unlink in it survives a power cut."""
    _fsync(path, os.O_DIRECTORY)


def fsync_file(path: Path) -> None:
    """fsync a file written by someone else (SQLite, a copy) by path, not following a
    symlink, so its content survives a power cut."""
    _fsync(path, os.O_NOFOLLOW)


def temp_name(dest: Path, tag: str) -> Path:
    """A hidden sibling of `dest` that can never be mistaken for it (`.<name>.<tag>-<random>`)."""
    return dest.with_name(f".{dest.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_file(dest: Path) -> Iterator[BinaryIO]:
    """Write `dest` atomically: a temp file in the same dir (0600), fsync, rename, fsync dir.

    Until the rename the previous `dest` is untouched; after it the new one is durable. A crash
    at any point leaves either the old or the new file under `dest`, and at worst a hidden temp
    file, which nothing ever reads. On an exception the temp file is removed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = temp_name(dest, "tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(dest.parent)


def remove_tree(path: Path) -> None:
    """Remove a directory tree so that a crash midway never leaves a partial tree under `path`:
    rename it to a hidden sibling first (atomic), then delete that."""
    if not path.exists():
        return
    trash = temp_name(path, "trash")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def tree_size(root: Path) -> int:
    """Bytes of all regular files under `root` (0 if absent); never follows symlinks."""
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


@contextlib.contextmanager
def flocked(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on `path` (created 0600); yields False when `blocking` is off
    and another holder has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
