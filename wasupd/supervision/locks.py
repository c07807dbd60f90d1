"""Chromium's profile singleton files, removed only when provably stale.

`SingletonLock` is a symlink to `<hostname>-<pid>`. It is stale when no live process uses the
profile dir and either the hostname is not ours (a container or host that no longer exists) or
the pid is dead or not a Chromium. The symlinks are never followed; they are only unlinked.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import psutil

SINGLETONS = ("SingletonLock", "SingletonCookie", "SingletonSocket")
CHROMIUM_NAMES = (
    "chrome",
    "chromium",
    "chromium-headless-shell",
    "headless_shell",
    "chrome-headless-shell",
)


def lock_owner(profile_dir: Path) -> tuple[str, int] | None:
    """(hostname, pid) from SingletonLock's target, None when absent or unparsable."""
    try:
        target = os.readlink(profile_dir / "SingletonLock")
    except OSError:
        return None
    host, sep, pid = target.rpartition("-")  # hostnames may contain '-'
    if not sep or not pid.isdigit():
        return None
    return host, int(pid)


def _is_chromium(pid: int) -> bool:
    try:
        name = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return False
    return any(name.startswith(n) for n in CHROMIUM_NAMES)


def _profile_in_use(profile_dir: Path) -> bool:
    marker = f"--user-data-dir={profile_dir}"
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if marker in (proc.info["cmdline"] or ()):
                return True
    return False


def is_stale(profile_dir: Path) -> bool:
    """True when the singleton files can be removed without harming a live browser."""
    if not (profile_dir / "SingletonLock").is_symlink():
        return any((profile_dir / n).is_symlink() for n in SINGLETONS[1:])
    if _profile_in_use(profile_dir):
        return False
    owner = lock_owner(profile_dir)
    if owner is None:
        return True
    host, pid = owner
    return host != socket.gethostname() or not _is_chromium(pid)


def clear_stale_singletons(profile_dir: Path) -> list[str]:
    """Unlink the singleton files when stale; the names removed."""
    if not is_stale(profile_dir):
        return []
    removed = []
    for name in SINGLETONS:
        path = profile_dir / name
        if path.is_symlink() or path.exists():
            path.unlink()
            removed.append(name)
    return removed
