"""Chromium singleton files are removed only when provably stale; the daemon's own profile lock."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from wasupd.errors import InvalidState
from wasupd.supervision.locks import (
    ProfileLock,
    clear_stale_singletons,
    is_chromium,
    lock_owner,
)

HERE = socket.gethostname()
ALL = ["SingletonCookie", "SingletonLock", "SingletonSocket"]


def singletons(profile: Path, lock_target: str, socket_target: str = "/nonexistent/s") -> None:
    """Write the three singleton symlinks the way Chromium does."""
    profile.mkdir(exist_ok=True)
    os.symlink(lock_target, profile / "SingletonLock")
    os.symlink("4242424242", profile / "SingletonCookie")
    os.symlink(socket_target, profile / "SingletonSocket")


def present(profile: Path) -> list[str]:
    """Which singleton links are still there (without following them)."""
    return sorted(n for n in ALL if os.path.lexists(profile / n))


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not a Chromium."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    """Start `argv`; the caller kills and reaps it."""
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL)


def test_foreign_host_lock_is_removed_without_following_links(tmp_path: Path) -> None:
    """A lock from another host (a dead container) goes; the files the links point at stay."""
    victim = tmp_path / "elsewhere"
    victim.write_text("not Chromium's to delete")
    profile = tmp_path / "p"
    singletons(profile, "old-container-7f3a-4242", socket_target=str(victim))
    assert lock_owner(profile) == ("old-container-7f3a", 4242)
    assert sorted(clear_stale_singletons(profile)) == ALL
    assert present(profile) == []
    assert victim.read_text() == "not Chromium's to delete"


def test_dead_pid_on_this_host_is_stale(tmp_path: Path) -> None:
    """Our hostname with a pid that no longer exists: stale."""
    proc = spawn(["true"])
    proc.wait()
    singletons(tmp_path / "p", f"{HERE}-{proc.pid}")
    assert sorted(clear_stale_singletons(tmp_path / "p")) == ALL


def test_live_pid_that_is_not_chromium_is_stale(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """Our hostname with a live pid reused by something else (not Chromium): stale."""
    singletons(tmp_path / "p", f"{HERE}-{sleeper.pid}")
    assert not is_chromium(sleeper.pid)
    assert sorted(clear_stale_singletons(tmp_path / "p")) == ALL


def test_live_chromium_pid_on_this_host_is_kept(tmp_path: Path) -> None:
    """Our hostname and a live Chromium-named binary: the lock may be real, so it stays."""
    fake = tmp_path / "chromium"
    shutil.copy("/bin/sleep", fake)  # /proc/<pid>/exe names the binary, so it must be a copy
    proc = spawn([str(fake), "60"])
    try:
        assert is_chromium(proc.pid)
        singletons(tmp_path / "p", f"{HERE}-{proc.pid}")
        assert clear_stale_singletons(tmp_path / "p") == []
        assert present(tmp_path / "p") == ALL
    finally:
        proc.kill()
        proc.wait()


def test_profile_in_use_is_kept_whatever_the_lock_says(tmp_path: Path) -> None:
    """A live process using the profile dir keeps even a foreign-looking lock."""
    profile = tmp_path / "p"
    singletons(profile, "other-host-1")
    proc = spawn(
        [sys.executable, "-c", "import time; time.sleep(60)", f"--user-data-dir={profile}"]
    )
    try:
        assert clear_stale_singletons(profile) == []
        assert present(profile) == ALL
    finally:
        proc.kill()
        proc.wait()


def test_unparsable_lock_and_lone_companions_are_stale(tmp_path: Path) -> None:
    """A target that is not host-pid, or companions without a lock, are crash leftovers."""
    singletons(tmp_path / "a", "garbage")
    assert lock_owner(tmp_path / "a") is None
    assert sorted(clear_stale_singletons(tmp_path / "a")) == ALL
    (tmp_path / "b").mkdir()
    os.symlink("123", tmp_path / "b" / "SingletonCookie")
    assert clear_stale_singletons(tmp_path / "b") == ["SingletonCookie"]


def test_clean_profile_is_left_alone(tmp_path: Path) -> None:
    """No singleton files: nothing removed, other files untouched."""
    (tmp_path / "Default").mkdir()
    (tmp_path / "Local State").write_text("{}")
    assert clear_stale_singletons(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Default", "Local State"]


def test_profile_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    """A second holder is refused with InvalidState until the first releases."""
    first = ProfileLock(tmp_path).acquire()
    with pytest.raises(InvalidState, match="in use by another wasupd process"):
        ProfileLock(tmp_path).acquire()
    first.release()
    with ProfileLock(tmp_path) as second:
        assert second.held
    assert not second.held


def test_profile_lock_held_by_another_process(tmp_path: Path) -> None:
    """Another daemon's lock refuses us; when that process dies the kernel frees the lock."""
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from wasupd.supervision.locks import ProfileLock;"
            f" ProfileLock(Path({str(tmp_path)!r})).acquire(); print('held', flush=True);"
            " sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            with pytest.raises(InvalidState):
                ProfileLock(tmp_path).acquire()
        finally:
            holder.kill()
            holder.wait()
    with ProfileLock(tmp_path) as lock:
        assert lock.held
