"""SealedProfiles on real files: unseal/seal, failures that leave the archive alone, crash leftovers,
quota, consistent checkpoints under a concurrent writer, export/import and re-keying."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.helpers.waiting import eventually
from wasupd.errors import InvalidState, KeyUnavailable, ProfileError
from wasupd.profiles import archive, snapshot
from wasupd.profiles.keys import (
    add_key,
    generate_key_file,
    keyring_loader,
    load_keyring,
    retire_keys,
)
from wasupd.profiles.lifecycle import LOCK_NAME, SIZES_TTL, SealedProfiles, recover_all
from wasupd.profiles.transfer import export_archive, import_archive, rekey_archives

MARKER = b"wasupd-test-credential-7f3a9c"
IDB = "Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.leveldb"


@dataclass
class Dirs:
    """A daemon's layout under a temp dir: key file, state (archives), runtime (live profiles)."""

    root: Path

    @property
    def key(self) -> Path:
        return self.root / "profile.key"

    @property
    def state(self) -> Path:
        return self.root / "state" / "profiles"

    @property
    def runtime(self) -> Path:
        return self.root / "run" / "profiles"

    def hooks(self, name: str = "s", quota_mib: int = 100) -> SealedProfiles:
        return SealedProfiles(
            name,
            archive_path=self.state / f"{name}.wasup",
            live_dir=self.runtime / name,
            keyring_loader=keyring_loader(self.key),
            quota_mib=quota_mib,
        )


@pytest.fixture
def dirs(tmp_path: Path) -> Dirs:
    d = Dirs(tmp_path)
    generate_key_file(d.key)
    return d


def fill(live: Path, marker: bytes = MARKER) -> None:
    """What a browser leaves: LevelDB storage with the credential, a cache, a lock."""
    (live / IDB).mkdir(parents=True, exist_ok=True)
    (live / IDB / "000003.log").write_bytes(b"\x00creds=" + marker + os.urandom(2000))
    (live / IDB / "CURRENT").write_text("MANIFEST-000001\n")
    (live / "Default/Local Storage/leveldb").mkdir(parents=True, exist_ok=True)
    (live / "Default/Local Storage/leveldb/000003.log").write_bytes(b"WABrowserId")
    (live / "Default/Cache/Cache_Data").mkdir(parents=True, exist_ok=True)
    (live / "Default/Cache/Cache_Data/f_000001").write_bytes(os.urandom(4096))


def files_containing(roots: list[Path], needle: bytes) -> list[Path]:
    return [
        f
        for root in roots
        for f in root.rglob("*")
        if f.is_file() and not f.is_symlink() and needle in f.read_bytes()
    ]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_seal_on_release_restore_on_prepare_and_no_plaintext_left(dirs: Dirs) -> None:
    """prepare -> browser writes -> release seals and removes; nothing readable remains; prepare restores."""
    hooks = dirs.hooks()
    live = await hooks.prepare()
    assert live == dirs.runtime / "s" and live.stat().st_mode & 0o777 == 0o700
    assert (live / LOCK_NAME).exists() and not (live / "Default").exists()
    fill(live)
    await hooks.release(wipe=False)
    assert not live.exists()
    assert files_containing([dirs.state.parent, dirs.runtime.parent], MARKER) == []
    sizes = hooks.sizes()
    assert (
        sizes["live_bytes"] == 0
        and sizes["sealed_bytes"] == (dirs.state / "s.wasup").stat().st_size
    )
    assert sizes["quota_bytes"] == 100 << 20
    live = await hooks.prepare()
    assert MARKER in (live / IDB / "000003.log").read_bytes()
    assert not (live / "Default/Cache").exists()  # caches are not part of the archive
    await hooks.release(wipe=True)
    assert not live.exists() and not (dirs.state / "s.wasup").exists()


@pytest.mark.parametrize(
    "fault", ["wrong key", "missing key", "0644 key", "flipped byte", "cut", "other session"]
)
async def test_unusable_archive_fails_prepare_and_is_left_untouched(dirs: Dirs, fault: str) -> None:
    """Each fault fails prepare with a precise error; the archive is byte-for-byte unchanged, no live dir."""
    hooks = dirs.hooks()
    fill(await hooks.prepare())
    await hooks.release(wipe=False)
    arc = dirs.state / "s.wasup"
    if fault == "wrong key":
        dirs.key.rename(dirs.root / "old.key")
        generate_key_file(dirs.key)
    elif fault == "missing key":
        dirs.key.unlink()
    elif fault == "0644 key":
        os.chmod(dirs.key, 0o644)
    elif fault == "flipped byte":
        data = bytearray(arc.read_bytes())
        data[len(data) // 2] ^= 4
        arc.write_bytes(bytes(data))
    elif fault == "cut":
        arc.write_bytes(arc.read_bytes()[:-100])
    else:
        arc.rename(dirs.state / "t.wasup")
        archive.reseal(dirs.state / "t.wasup", load_keyring(dirs.key), session="t", dest=arc)
    before = digest(arc)
    expected = {
        "wrong key": (KeyUnavailable, "which is not in the key file"),
        "missing key": (KeyUnavailable, "wasupd keygen"),
        "0644 key": (KeyUnavailable, "chmod 600"),
        "flipped byte": (ProfileError, "fails authentication"),
        "cut": (ProfileError, "truncated"),
        "other session": (ProfileError, "sealed for session 't', not 's'"),
    }[fault]
    with pytest.raises(expected[0], match=expected[1]):
        await hooks.prepare()
    assert digest(arc) == before
    assert not dirs.runtime.exists() or list(dirs.runtime.iterdir()) == []


async def test_release_never_seals_an_empty_profile_over_an_archive(dirs: Dirs) -> None:
    """A live profile whose storage vanished is not sealed: the archive with the credential stays."""
    hooks = dirs.hooks()
    fill(await hooks.prepare())
    await hooks.release(wipe=False)
    before = digest(dirs.state / "s.wasup")
    live = await hooks.prepare()
    for sub in ("Default/IndexedDB", "Default/Local Storage"):
        for f in sorted((live / sub).rglob("*"), reverse=True):
            f.rmdir() if f.is_dir() else f.unlink()
    await hooks.release(wipe=False)
    assert digest(dirs.state / "s.wasup") == before and not live.exists()


async def test_release_without_key_keeps_the_live_profile(dirs: Dirs) -> None:
    """If the key vanished while running, release raises and the live dir (the only copy) stays."""
    hooks = dirs.hooks()
    fill(await hooks.prepare())
    dirs.key.unlink()
    with pytest.raises(KeyUnavailable):
        await hooks.release(wipe=False)
    assert MARKER in (dirs.runtime / "s" / IDB / "000003.log").read_bytes()


def test_crash_leftovers_are_sealed_or_removed_at_daemon_start(dirs: Dirs) -> None:
    """Newer leftovers are sealed, older ones dropped, temp dirs deleted; a locked one is left alone."""
    ring = load_keyring(dirs.key)
    for name in ("newer", "older", "empty", "locked"):
        fill(dirs.runtime / name, marker=name.encode() * 4)
    archive.seal_dir(dirs.runtime / "older", dirs.state / "older.wasup", ring, "older")
    os.utime(dirs.state / "older.wasup", ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    stale = dirs.runtime / "newer"
    archive.seal_dir(stale, dirs.state / "newer.wasup", ring, "newer")
    os.utime(dirs.state / "newer.wasup", ns=(1, 1))  # the archive predates the live files
    for f in (dirs.runtime / "empty").rglob("*"):
        if f.is_file():
            f.unlink()
    (dirs.runtime / ".s.wasup.unseal-1-ab").mkdir()
    (dirs.runtime / ".s.wasup.unseal-1-ab" / "plain").write_bytes(MARKER)
    held = os.open(dirs.runtime / "locked" / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        outcomes = recover_all(dirs.runtime, dirs.state, keyring_loader(dirs.key))
    finally:
        os.close(held)
    assert outcomes["newer"] == "sealed"
    assert outcomes["older"] == "removed (the archive is newer)"
    assert outcomes["empty"] == "removed (nothing to keep)"
    assert (
        outcomes["locked"].startswith("kept: live profile")
        and "in use by another" in outcomes["locked"]
    )
    assert outcomes[".s.wasup.unseal-1-ab"] == "removed (temporary)"
    assert sorted(p.name for p in dirs.runtime.iterdir()) == ["locked"]
    archive.unseal(dirs.state / "newer.wasup", dirs.root / "o", ring, "newer")
    assert b"newer" * 4 in (dirs.root / "o" / IDB / "000003.log").read_bytes()


def test_leftover_without_key_is_kept_not_lost(dirs: Dirs) -> None:
    """With no key a leftover cannot be sealed: it is kept (and reported), never deleted."""
    fill(dirs.runtime / "s")
    dirs.key.unlink()
    outcomes = recover_all(dirs.runtime, dirs.state, keyring_loader(dirs.key))
    assert outcomes["s"].startswith("kept: profile key") and "wasupd keygen" in outcomes["s"]
    assert MARKER in (dirs.runtime / "s" / IDB / "000003.log").read_bytes()


async def test_prepare_seals_a_newer_leftover_before_unsealing(dirs: Dirs) -> None:
    """A leftover live dir newer than the archive wins: its data is what the next start sees."""
    hooks = dirs.hooks()
    fill(await hooks.prepare(), marker=b"first-run")
    await hooks.release(wipe=False)
    crashed = dirs.hooks()
    fill(await crashed.prepare(), marker=b"crashed-run")
    crashed._drop_lock()  # the daemon dies here: no release, and the kernel drops its flock
    hooks2 = dirs.hooks()
    live = await hooks2.prepare()
    assert b"crashed-run" in (live / IDB / "000003.log").read_bytes()
    await hooks2.release(wipe=False)


async def test_over_quota_caches_are_pruned_and_storage_kept(dirs: Dirs) -> None:
    """Past quota_mib the caches are emptied (storage is never touched) and the size drops under it."""
    hooks = dirs.hooks(quota_mib=1)
    live = await hooks.prepare()
    fill(live)
    for i in range(3):
        (live / "Default/Code Cache/js").mkdir(parents=True, exist_ok=True)
        (live / f"Default/Code Cache/js/{i}").write_bytes(os.urandom(1 << 19))
    assert hooks.enforce_quota() == ["Default/Cache", "Default/Code Cache"]
    assert (live / "Default/Code Cache").is_dir() and not list(
        (live / "Default/Code Cache").iterdir()
    )
    assert MARKER in (live / IDB / "000003.log").read_bytes()
    await hooks.checkpoint()
    assert hooks.enforce_quota() == []
    await hooks.release(wipe=False)


WRITER = r"""
import os, sys, time
db, pause = sys.argv[1], float(sys.argv[2])
count = 0
with open(os.path.join(db, "000003.log"), "ab") as log:
    while True:
        count += 1
        log.write(b"record %08d\n" % count)
        log.flush()
        with open(os.path.join(db, "COUNT.tmp"), "w") as fh:
            fh.write(str(count))
        os.replace(os.path.join(db, "COUNT.tmp"), os.path.join(db, "CURRENT"))
        if pause:
            time.sleep(pause)  # the writer's own pace
"""


async def test_checkpoint_of_an_unchanged_profile_seals_nothing(dirs: Dirs) -> None:
    """A second checkpoint with no essential file changed leaves the archive as it is (same
    inode, same bytes); a changed cache does not count; a changed store, a replaced archive or
    a new key each make the next checkpoint seal again."""
    hooks = dirs.hooks()
    live = await hooks.prepare()
    fill(live)
    arc = dirs.state / "s.wasup"

    def identity() -> tuple[int, int]:
        return arc.stat().st_ino, arc.stat().st_mtime_ns

    assert await asyncio.to_thread(hooks.checkpoint_sync)
    first = identity()
    (live / "Default/Cache/Cache_Data/f_000002").write_bytes(b"cache only")
    assert await asyncio.to_thread(hooks.checkpoint_sync) is None
    assert identity() == first
    with open(live / IDB / "000003.log", "ab") as fh:
        fh.write(b"one more record")
    assert await asyncio.to_thread(hooks.checkpoint_sync)
    second = identity()
    assert second != first
    shutil.copy(arc, dirs.root / "copy.wasup")
    os.replace(dirs.root / "copy.wasup", arc)  # someone else's archive now (an import, a restore)
    assert await asyncio.to_thread(hooks.checkpoint_sync)
    assert await asyncio.to_thread(hooks.checkpoint_sync) is None
    add_key(dirs.key)  # a new current key (rotation, first step)
    assert await asyncio.to_thread(hooks.checkpoint_sync)
    await hooks.release(wipe=False)


@contextlib.contextmanager
def writer_process(live: Path, pause: float) -> Iterator[subprocess.Popen[bytes]]:
    """A store that commits data before publishing its count (like LevelDB's log and CURRENT),
    run as a process that names the profile like a browser does, so a checkpoint can pause it.
    A torn copy shows a published count above the records."""
    db = live / IDB
    db.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), str(pause), f"--user-data-dir={live}"]
    )
    try:
        eventually(
            lambda: (db / "CURRENT").exists(), 15, "the writer's first commit", interval=0.01
        )
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def published(root: Path) -> int:
    return int((root / IDB / "CURRENT").read_text() or 0)


@pytest.mark.parametrize(("path", "pace"), [("optimistic", 0.002), ("paused", 0.0)])
async def test_checkpoints_under_a_concurrent_writer_are_consistent(
    dirs: Dirs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, pace: float
) -> None:
    """Checkpoints while a process commits (copied while it rests, or back to back with the pause
    forced) are each one instant: the published count never exceeds the data; the writer runs on."""
    if path == "paused":
        monkeypatch.setattr(snapshot, "QUIET_TRIES", 0)
    hooks = dirs.hooks()
    live = await hooks.prepare()
    ring = load_keyring(dirs.key)
    with writer_process(live, pace) as proc:
        for i in range(8):
            async with asyncio.timeout(30):
                await hooks.checkpoint()
            assert psutil.Process(proc.pid).status() != psutil.STATUS_STOPPED
            out = tmp_path / f"c{i}"
            archive.unseal(dirs.state / "s.wasup", out, ring, "s")
            records = (out / IDB / "000003.log").read_bytes().count(b"\n")
            assert 0 < published(out) <= records, (i, published(out), records)
        if path == "paused":
            assert hooks.last_checkpoint.paused_units and hooks.last_checkpoint.longest_pause > 0
        after = published(live)
        eventually(
            lambda: published(live) > after,
            15,
            "the writer to go on after the checkpoints",
            interval=0.01,
        )
    await hooks.release(wipe=False)


async def test_a_foreign_writer_that_never_rests_fails_the_checkpoint_only(
    dirs: Dirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A program that is not the profile's browser, writing during every copy, cannot be paused:
    the checkpoint fails with why, its copy is removed, and the previous archive stays."""
    hooks = dirs.hooks()
    live = await hooks.prepare()
    fill(live)
    await hooks.checkpoint()
    before = digest(dirs.state / "s.wasup")
    real_copy = snapshot._copy_file

    def copy_then_foreign_write(src: Path, dest: Path, rel: Path) -> None:
        real_copy(src, dest, rel)
        with open(live / IDB / "000003.log", "ab") as log:
            log.write(b"x")  # lands between the scan before and the scan after, every time

    monkeypatch.setattr(snapshot, "_copy_file", copy_then_foreign_write)
    with open(live / IDB / "000003.log", "ab") as log:
        log.write(b"y")  # changed since the last checkpoint, so this one has work to do
    with pytest.raises(ProfileError, match="kept changing even with the browser paused"):
        async with asyncio.timeout(30):
            await hooks.checkpoint()
    assert digest(dirs.state / "s.wasup") == before
    assert [p.name for p in dirs.runtime.iterdir()] == ["s"], "the checkpoint copy must be removed"
    await hooks.release(wipe=False)


@pytest.fixture
def sealed_session(dirs: Dirs) -> Iterator[Path]:
    hooks = dirs.hooks("mover")
    fill(hooks.prepare_sync())
    hooks.release_sync(False)
    yield dirs.state / "mover.wasup"


def test_export_then_import_on_another_host_under_a_new_name(
    dirs: Dirs, sealed_session: Path, tmp_path: Path
) -> None:
    """An export is the encrypted archive; importing it elsewhere (same key) re-seals it for the new name."""
    out = tmp_path / "mover.export"
    assert export_archive(sealed_session, out) == sealed_session.stat().st_size
    assert out.read_bytes() == sealed_session.read_bytes() and MARKER not in out.read_bytes()
    other = Dirs(tmp_path / "host2")
    other.root.mkdir()
    fd = os.open(other.key, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, dirs.key.read_bytes())
    os.close(fd)
    header = import_archive(out, other.state / "moved.wasup", load_keyring(other.key), "moved")
    assert header.session == "moved"
    live = other.hooks("moved").prepare_sync()
    assert MARKER in (live / IDB / "000003.log").read_bytes()
    with pytest.raises(InvalidState, match="exists; replace it explicitly"):
        import_archive(out, other.state / "moved.wasup", load_keyring(other.key), "moved")


def test_import_with_another_key_or_damage_changes_nothing(
    dirs: Dirs, sealed_session: Path, tmp_path: Path
) -> None:
    """An import the receiving key cannot open, or a damaged file, is refused before anything is written."""
    other_key = tmp_path / "other.key"
    generate_key_file(other_key)
    dest = tmp_path / "host2" / "moved.wasup"
    with pytest.raises(KeyUnavailable, match="not in the key file"):
        import_archive(sealed_session, dest, load_keyring(other_key), "moved")
    bad = tmp_path / "bad.wasup"
    bad.write_bytes(sealed_session.read_bytes()[:-1])
    with pytest.raises(ProfileError, match="truncated"):
        import_archive(bad, dest, load_keyring(dirs.key), "moved")
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []


def test_rekey_reseals_every_archive_then_old_key_can_go(dirs: Dirs) -> None:
    """After --add, rekey moves every archive to the new key (damaged ones reported); then retire works."""
    ring = load_keyring(dirs.key)
    for name in ("a", "b", "c"):
        fill(dirs.runtime / name)
        archive.seal_dir(dirs.runtime / name, dirs.state / f"{name}.wasup", ring, name)
    bad = dirs.state / "c.wasup"
    bad.write_bytes(bad.read_bytes()[:-3])
    new = add_key(dirs.key)
    report = rekey_archives(dirs.state, load_keyring(dirs.key))
    assert (report.current_key, report.resealed, report.already_current) == (new, ["a", "b"], [])
    assert "truncated" in report.failed["c"]
    assert rekey_archives(dirs.state, load_keyring(dirs.key)).already_current == ["a", "b"]
    retire_keys(dirs.key)
    for name in ("a", "b"):
        archive.verify(dirs.state / f"{name}.wasup", load_keyring(dirs.key), name)


async def test_sizes_are_reused_for_a_minute_and_measured_afresh_after_a_checkpoint(
    dirs: Dirs,
) -> None:
    """Status and metrics ask for every session's sizes each time: within SIZES_TTL the live
    dir is not walked again (a file written meanwhile is not counted yet); a checkpoint, or the
    TTL running out, measures it afresh. A minute at least: at 2 s, 100 sessions polled by
    `daemon.status` once a second cost the daemon over 3% of a core."""
    assert SIZES_TTL >= 60
    now = [1000.0]
    hooks = SealedProfiles(
        "s",
        archive_path=dirs.state / "s.wasup",
        live_dir=dirs.runtime / "s",
        keyring_loader=keyring_loader(dirs.key),
        quota_mib=100,
        clock=lambda: now[0],
    )
    live = await hooks.prepare()
    fill(live)
    first = hooks.sizes()["live_bytes"]
    (live / "Default/extra").write_bytes(b"x" * 10_000)
    now[0] += SIZES_TTL - 1
    assert hooks.sizes()["live_bytes"] == first
    now[0] += 2
    assert hooks.sizes()["live_bytes"] == first + 10_000
    (live / "Default/more").write_bytes(b"y" * 5_000)
    await hooks.checkpoint()
    after = hooks.sizes()
    assert after["live_bytes"] == first + 15_000 and after["sealed_bytes"] > 0
    await hooks.release(wipe=True)
