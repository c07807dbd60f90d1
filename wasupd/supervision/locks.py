"""Profile locks: Chromium's singleton files (removed only when provably stale) and our own.

`SingletonLock` is a symlink to `<hostname>-<pid>` (`SingletonCookie` and `SingletonSocket` are
its companions). They are stale when no live process uses the profile dir and either the
hostname is not ours (a container or host that no longer exists), or the pid is dead or is not a
Chromium. The symlinks are never followed: only read with readlink and unlinked.

`ProfileLock` is the daemon's own exclusive `flock` on `<profile>/.wasupd.lock`, so two daemons
(or two sessions by mistake) can never run browsers on one profile.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType

import psutil

from wasupd.errors import InvalidState
from wasupd.watchdogs.resources import names_profile

SINGLETONS = ("SingletonLock", "SingletonCookie", "SingletonSocket")
CHROMIUM_NAMES = ("chrome", "chromium", "headless_shell", "chrome-headless-shell")
LOCK_NAME = ".wasupd.lock"


def lock_owner(profile_dir: Path) -> tuple[str, int] | None:
    """(hostname, pid) from SingletonLock's target; None when absent or unparsable."""
    try:
        target = os.readlink(profile_dir / "SingletonLock")
    except OSError:
        return None
    host, sep, pid = target.rpartition("-")  # hostnames may contain '-': split at the last one
    if not sep or not host or not pid.isdigit():
        return None
    return host, int(pid)


def is_chromium(pid: int) -> bool:
    """True when `pid` is alive and runs a Chromium binary (by its executable's name)."""
    try:
        name = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return False
    return any(name.startswith(n) for n in CHROMIUM_NAMES)


def profile_in_use(profile_dir: Path) -> bool:
    """True when a live process names `profile_dir` as its user data dir."""
    for proc in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and names_profile(
                proc.info["cmdline"] or (), profile_dir
            ):
                return True
    return False


def is_stale(profile_dir: Path) -> bool:
    """True when the singleton files exist and can go without harming a live browser."""
    present = [n for n in SINGLETONS if os.path.lexists(profile_dir / n)]
    if not present or profile_in_use(profile_dir):
        return False
    owner = lock_owner(profile_dir)
    if owner is None:  # companions without a (readable) lock: left over from a crash
        return True
    host, pid = owner
    return host != socket.gethostname() or not is_chromium(pid)


def clear_stale_singletons(profile_dir: Path) -> list[str]:
    """Unlink the singleton files when stale (never following them); the names removed."""
    if not is_stale(profile_dir):
        return []
    removed = []
    for name in SINGLETONS:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(profile_dir / name)
            removed.append(name)
    return removed


class ProfileLock:
    """The daemon's exclusive, non-blocking `flock` on `<profile_dir>/.wasupd.lock`.

    `acquire()` raises `InvalidState` when another process (another daemon) holds it. The lock
    goes with the fd: released by `release()`, or by the kernel when the holder dies.
    """

    def __init__(self, profile_dir: Path) -> None:
        self.path = profile_dir / LOCK_NAME
        self._fd = -1

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd >= 0

    def acquire(self) -> ProfileLock:
        """Take the lock now or raise `InvalidState`; idempotent while held."""
        if self.held:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InvalidState(
                f"profile {self.path.parent} is in use by another wasupd process;"
                " stop the other daemon, or give this one its own state_dir",
                path=str(self.path.parent),
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for people: who holds it
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (closing the fd releases the flock); idempotent."""
        if self.held:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ProfileLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
