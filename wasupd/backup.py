"""Online backups (`daemon.backup`) and their offline restore (`wasupd restore`).

Copying `/var/lib/wasupd` with a file-level tool while the daemon runs can catch the database
between its main file and its write-ahead log, and such a copy may not open. A backup made here
is consistent while sessions run and messages flow:

- `wasupd.db`: the database copied with `VACUUM INTO` on a connection of its own, which reads
  one snapshot (WAL readers do not block the daemon's writers) and writes a single compacted
  file with no `-wal` to forget;
- `profiles/NAME.wasup`: every session's sealed archive, taken after a checkpoint of each
  running session. Archives are only ever replaced by rename, so a hard link is a frozen copy
  (a real copy when the backup dir is on another filesystem). Each one is authenticated with
  the daemon's keyring; one that fails is left out and named, and the rest is still backed up;
- `MANIFEST.json`: format, wasupd version, schema version, time, sessions and files.

A backup is built in a `.partial-*` sibling and renamed into place, so a directory named
`wasupd-<UTC time>` is always complete. Archives stay encrypted and the key is not part of a
backup: keep the key file somewhere else. Backups live in `<state_dir>/backups` because under
systemd's `ProtectSystem=strict` that is where the daemon may write; copy them from there with
any tool (their files never change).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasupd import __version__
from wasupd.errors import InvalidArgument, InvalidState, StoreError, WasupError
from wasupd.paths import StateLayout
from wasupd.profiles import archive
from wasupd.profiles.fsutil import fsync_dir, fsync_file, remove_tree
from wasupd.profiles.keys import Keyring
from wasupd.store.db import SCHEMA_VERSION

FORMAT = "wasupd-backup-v1"
MANIFEST = "MANIFEST.json"
DB_NAME = "wasupd.db"
NAME_RE = re.compile(r"wasupd-\d{8}T\d{6}Z(-\d+)?")
# What a manifest may name: the database and archives of valid session names, nothing else.
FILE_RE = re.compile(r"wasupd\.db|profiles/[a-z0-9][a-z0-9_-]{0,62}\.wasup")


@dataclass(frozen=True, slots=True)
class BackupResult:
    """Where a backup went and what it holds."""

    path: Path
    sessions: list[str]
    files: int
    bytes: int
    pruned: list[str]
    damaged: dict[str, str] = field(default_factory=dict)  # session -> why it was left out

    def as_dict(self) -> dict[str, Any]:
        """The RPC result."""
        return {
            "path": str(self.path),
            "sessions": self.sessions,
            "files": self.files,
            "bytes": self.bytes,
            "pruned": self.pruned,
            "damaged": self.damaged,
        }


def backups_dir(state_dir: Path) -> Path:
    """Where `daemon.backup` writes: `<state_dir>/backups`."""
    return StateLayout(state_dir).backups


def _stamp(now: float) -> str:
    """UTC time as used in backup and `replaced-*` directory names."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


def _new_name(root: Path, now: float) -> str:
    base = "wasupd-" + _stamp(now)
    name, n = base, 1
    while (root / name).exists():  # two backups in one second
        n += 1
        name = f"{base}-{n}"
    return name


def _snapshot_db(db: Path, dest: Path) -> None:
    with contextlib.closing(sqlite3.connect(db, timeout=30.0)) as conn:
        conn.execute("VACUUM INTO ?", (str(dest),))
    fsync_file(dest)


def _link_or_copy(src: Path, dest: Path) -> bool:
    """Hard-link (or copy) `src` to `dest`; False when `src` is gone (session just deleted)."""
    try:
        os.link(src, dest)
    except FileNotFoundError:
        return False
    except OSError:  # another filesystem, or links not allowed: a full copy
        try:
            shutil.copy2(src, dest)
        except FileNotFoundError:
            return False
        fsync_file(dest)
    return True


def _clean_leftovers(root: Path) -> None:
    """Remove what a crash mid-backup or mid-prune left: `.partial-*` dirs and the hidden
    trash dirs of an interrupted `remove_tree` (only one backup runs at a time)."""
    for entry in root.iterdir():
        if entry.name.startswith(".") and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


def write_backup(
    state_dir: Path,
    archives: dict[str, Path],
    keyring: Keyring,
    *,
    now: float,
    keep: int = 0,
) -> BackupResult:
    """Write a complete backup of `state_dir`'s database and of `archives` (session -> sealed
    archive, already checkpointed by the caller); blocking. Sessions without an archive yet
    are listed without a file; an archive that fails authentication is left out and named in
    `damaged`. With `keep` > 0, older complete backups beyond the newest `keep` are removed
    afterwards (never the one just written)."""
    root = backups_dir(state_dir)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    _clean_leftovers(root)
    name = _new_name(root, now)
    work = root / f".partial-{name}"
    work.mkdir(mode=0o700)
    damaged: dict[str, str] = {}
    try:
        _snapshot_db(state_dir / DB_NAME, work / DB_NAME)
        (work / "profiles").mkdir(mode=0o700)
        files: dict[str, int] = {DB_NAME: (work / DB_NAME).stat().st_size}
        key_ids: set[str] = set()
        for session, src in sorted(archives.items()):
            rel = f"profiles/{src.name}"
            if not _link_or_copy(src, work / rel):
                continue
            # A damaged archive must not hide in a backup, nor stop the others being saved.
            try:
                key_ids.add(archive.verify(work / rel, keyring, session).key_id)
            except WasupError as exc:
                (work / rel).unlink()
                damaged[session] = exc.message
                continue
            files[rel] = (work / rel).stat().st_size
        manifest = {
            "format": FORMAT,
            "wasupd": __version__,
            "schema": SCHEMA_VERSION,
            "created_at": now,
            "key_ids": sorted(key_ids),  # the keys a restore needs
            "sessions": sorted(archives),
            "damaged": damaged,
            "files": files,
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        fsync_file(work / MANIFEST)
        fsync_dir(work / "profiles")
        fsync_dir(work)
        os.rename(work, root / name)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    pruned = prune(root, keep, spare=root / name) if keep > 0 else []
    total = sum(files.values())
    return BackupResult(root / name, sorted(archives), len(files), total, pruned, damaged)


def _created_at(backup: Path) -> float:
    try:
        return float(json.loads((backup / MANIFEST).read_text())["created_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return backup.stat().st_mtime


def complete_backups(root: Path) -> list[Path]:
    """Complete backups under `root`, oldest first (by the time in their manifest, so a
    clock stepped back or a `-10` suffix does not reorder them)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if NAME_RE.fullmatch(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: (_created_at(p), p.name))


def prune(root: Path, keep: int, spare: Path | None = None) -> list[str]:
    """Remove complete backups beyond the newest `keep` (`spare` is never removed); the names
    removed."""
    backups = [p for p in complete_backups(root) if p != spare]
    removed = []
    for old in backups[: max(0, len(backups) - (keep - (spare is not None)))]:
        remove_tree(old)
        removed.append(old.name)
    return removed


def _regular_file(backup: Path, rel: str) -> os.stat_result:
    """`lstat` of a file of the backup; a symlink or anything but a regular file is refused
    (a restore run as root must not be led to copy a file it was pointed at)."""
    try:
        st = os.lstat(backup / rel)
    except FileNotFoundError:
        raise InvalidArgument(
            f"{backup} is damaged: {rel} is missing; use another backup"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidArgument(
            f"{backup} is damaged: {rel} is not a regular file; use another backup"
        )
    return st


def read_manifest(backup: Path) -> dict[str, Any]:
    """The manifest of a complete backup; `InvalidArgument` saying what is wrong otherwise."""
    try:
        _regular_file(backup, MANIFEST)
        manifest = json.loads((backup / MANIFEST).read_text())
    except InvalidArgument:
        if not (backup / MANIFEST).exists():
            raise InvalidArgument(
                f"{backup} is not a wasupd backup (no {MANIFEST}); name a directory made by"
                " `wasupctl backup`"
            ) from None
        raise
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"{backup / MANIFEST} cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidArgument(f"{backup} is not a {FORMAT} backup")
    schema, files = manifest.get("schema"), manifest.get("files")
    if not isinstance(schema, int) or not isinstance(files, dict):
        raise InvalidArgument(f"{backup} is damaged: its manifest lacks `schema` or `files`")
    if schema > SCHEMA_VERSION:
        raise InvalidArgument(
            f"{backup} was made by a newer wasupd (schema {schema}, this one knows up to"
            f" {SCHEMA_VERSION}); restore it with that version or newer"
        )
    if DB_NAME not in files:
        raise InvalidArgument(f"{backup} is damaged: its manifest lists no {DB_NAME}")
    for rel, size in files.items():
        if not FILE_RE.fullmatch(rel):
            raise InvalidArgument(f"{backup} is damaged: unexpected file {rel!r} in its manifest")
        if _regular_file(backup, rel).st_size != size:
            raise InvalidArgument(
                f"{backup} is damaged: {rel} is not {size} bytes; use another backup"
            )
    return manifest


def _check_database(backup: Path) -> None:
    """The backup's database opens, passes `quick_check` and is not from a newer wasupd."""
    path = backup / DB_NAME
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as exc:
        raise InvalidArgument(f"{path} is damaged ({exc}); use another backup") from None
    if verdict != "ok":
        raise InvalidArgument(f"{path} is damaged ({verdict}); use another backup")
    if version > SCHEMA_VERSION:
        raise InvalidArgument(f"{path} was written by a newer wasupd; restore it with that one")


def _copy_in(src: Path, dest: Path, owner: os.stat_result) -> None:
    """Copy a regular file without following a symlink, fsync it, give it to `owner` (run as
    root, files must still belong to the daemon's user)."""
    fd_in = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        fd_out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with open(fd_in, "rb", closefd=False) as fin, open(fd_out, "wb", closefd=False) as fo:
                shutil.copyfileobj(fin, fo, 1 << 20)
            os.fsync(fd_out)
            if os.geteuid() == 0:
                os.fchown(fd_out, owner.st_uid, owner.st_gid)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def restore_backup(
    backup: Path, state_dir: Path, live_root: Path, keyring: Keyring, *, now: float
) -> Path:
    """Replace `state_dir`'s database and archives with those of `backup` (the daemon must be
    stopped); blocking. Everything is checked first: the manifest, each file (regular, its
    size), the database (`quick_check`), each archive authenticated with `keyring`, and no
    live profile left in `live_root` by a crash (the next start would seal it over the
    restored archive). Nothing is changed until all of that passed and the new files are
    copied in. The previous database and archives are kept (hard links, or moved) in
    `<state_dir>/replaced-<time>`, which is returned."""
    manifest = read_manifest(backup)
    left = sorted(p.name for p in live_root.iterdir()) if live_root.is_dir() else []
    if left:
        raise InvalidState(
            f"live profiles left by a daemon that did not stop cleanly: {', '.join(left)} in"
            f" {live_root}; start and stop wasupd once (it seals them), then restore"
        )
    _check_database(backup)
    for rel in manifest["files"]:
        if rel.startswith("profiles/"):
            archive.verify(backup / rel, keyring, Path(rel).name.removesuffix(archive.SUFFIX))
    aside = state_dir / ("replaced-" + _stamp(now))
    if aside.exists():
        raise InvalidState(f"{aside} already exists; wait a second and run the restore again")
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    owner = state_dir.stat()
    staging = state_dir / ".restore-partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        (staging / "profiles").mkdir(parents=True, mode=0o700)
        for rel in manifest["files"]:
            _copy_in(backup / rel, staging / rel, owner)
        fsync_dir(staging / "profiles")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        _swap_in(staging, state_dir, aside, owner)
    except OSError as exc:
        raise StoreError(
            f"restore stopped midway ({exc}); the previous database and archives are in"
            f" {aside}, the restored ones in {staging}: fix the cause and run the restore again"
        ) from None
    return aside


def _swap_in(staging: Path, state_dir: Path, aside: Path, owner: os.stat_result) -> None:
    """Keep the old files in `aside` (hard links), then replace file by file with `os.replace`,
    so that every path holds the old or the new file at any moment, never nothing."""
    (aside / "profiles").mkdir(parents=True, mode=0o700)
    if os.geteuid() == 0:
        for d in (aside, aside / "profiles"):
            os.chown(d, owner.st_uid, owner.st_gid)
    profiles = state_dir / "profiles"
    profiles.mkdir(exist_ok=True, mode=0o700)
    old = [p for p in profiles.iterdir() if p.name.endswith(archive.SUFFIX)]
    for path in [state_dir / DB_NAME, *old]:
        if path.exists():
            os.link(path, aside / path.relative_to(state_dir))
    for suffix in ("-wal", "-shm"):  # the old database's log belongs with it, not the new one
        log_file = state_dir / f"{DB_NAME}{suffix}"
        if log_file.exists():
            os.rename(log_file, aside / log_file.name)
    fsync_dir(aside / "profiles")
    fsync_dir(aside)
    new = {p.name for p in (staging / "profiles").iterdir()}
    for name in sorted(new):
        os.replace(staging / "profiles" / name, profiles / name)
    for path in old:
        if path.name not in new:  # a session the backup does not have (kept in `aside`)
            path.unlink()
    fsync_dir(profiles)
    os.replace(staging / DB_NAME, state_dir / DB_NAME)
    fsync_dir(state_dir)
    shutil.rmtree(staging, ignore_errors=True)


UNKNOWN_KEY = "?"


def keys_in_use(state_dir: Path) -> dict[str, list[str]]:
    """key id -> the archives that need it, named relative to `state_dir`: the live ones
    (`profiles/`), those in backups, in the `replaced-*` dirs a restore keeps, and pinned
    exports. Headers are read without the key, which is enough to know which key they name; an
    archive whose header cannot be read is listed under `UNKNOWN_KEY`, since it may need any."""
    used: dict[str, list[str]] = {}
    layout = StateLayout(state_dir)
    places = [layout.archives, layout.exports]
    places += [p / "profiles" for p in layout.replaced()]
    places += [p / "profiles" for p in complete_backups(backups_dir(state_dir))]
    for place in places:
        if not place.is_dir():
            continue
        for path in sorted(place.glob(f"*{archive.SUFFIX}")):
            try:
                key = archive.inspect(path).key_id
            except (WasupError, OSError):
                key = UNKNOWN_KEY
            used.setdefault(key, []).append(str(path.relative_to(state_dir)))
    return used
