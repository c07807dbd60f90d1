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
  the daemon's keyring before the backup is declared complete;
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wasupd import __version__
from wasupd.errors import InvalidArgument, InvalidState
from wasupd.profiles import archive
from wasupd.profiles.fsutil import fsync_dir, remove_tree
from wasupd.profiles.keys import Keyring
from wasupd.store.db import SCHEMA_VERSION

FORMAT = "wasupd-backup-v1"
MANIFEST = "MANIFEST.json"
DB_NAME = "wasupd.db"
NAME_RE = re.compile(r"^wasupd-\d{8}T\d{6}Z(-\d+)?$")
# What a manifest may name: the database and archives of valid session names, nothing else.
FILE_RE = re.compile(r"^(wasupd\.db|profiles/[a-z0-9][a-z0-9_-]{0,62}\.wasup)$")


@dataclass(frozen=True, slots=True)
class BackupResult:
    """Where a backup went and what it holds."""

    path: Path
    sessions: list[str]
    files: int
    bytes: int
    pruned: list[str]

    def as_dict(self) -> dict[str, Any]:
        """The RPC result."""
        return {
            "path": str(self.path),
            "sessions": self.sessions,
            "files": self.files,
            "bytes": self.bytes,
            "pruned": self.pruned,
        }


def backups_dir(state_dir: Path) -> Path:
    """Where `daemon.backup` writes: `<state_dir>/backups`."""
    return state_dir / "backups"


def _new_name(root: Path, now: float) -> str:
    base = "wasupd-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    name, n = base, 1
    while (root / name).exists():  # two backups in one second
        n += 1
        name = f"{base}-{n}"
    return name


def _snapshot_db(db: Path, dest: Path) -> None:
    with contextlib.closing(sqlite3.connect(db, timeout=30.0)) as conn:
        conn.execute("VACUUM INTO ?", (str(dest),))
    with open(dest, "rb") as fh:
        os.fsync(fh.fileno())


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:  # another filesystem, or links not allowed: a full copy
        shutil.copy2(src, dest)
        with open(dest, "rb") as fh:
            os.fsync(fh.fileno())


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
    are listed in the manifest without a file. With `keep` > 0, older complete backups beyond
    the newest `keep` are removed afterwards."""
    root = backups_dir(state_dir)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    for cut in root.glob(".partial-*"):  # a backup cut off by a crash (one runs at a time)
        remove_tree(cut)
    name = _new_name(root, now)
    work = root / f".partial-{name}"
    work.mkdir(mode=0o700)
    try:
        _snapshot_db(state_dir / DB_NAME, work / DB_NAME)
        (work / "profiles").mkdir(mode=0o700)
        files: dict[str, int] = {DB_NAME: (work / DB_NAME).stat().st_size}
        key_ids: set[str] = set()
        for session, src in sorted(archives.items()):
            if not src.exists():
                continue
            rel = f"profiles/{src.name}"
            _link_or_copy(src, work / rel)
            # A damaged archive must not hide in a backup: authenticate it now.
            key_ids.add(archive.verify(work / rel, keyring, session).key_id)
            files[rel] = (work / rel).stat().st_size
        manifest = {
            "format": FORMAT,
            "wasupd": __version__,
            "schema": SCHEMA_VERSION,
            "created_at": now,
            "key_ids": sorted(key_ids),  # the keys a restore needs
            "sessions": sorted(archives),
            "files": files,
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        fsync_dir(work / "profiles")
        fsync_dir(work)
        os.rename(work, root / name)
        fsync_dir(root)
    except BaseException:
        remove_tree(work)
        raise
    pruned = prune(root, keep) if keep > 0 else []
    return BackupResult(root / name, sorted(archives), len(files), sum(files.values()), pruned)


def complete_backups(root: Path) -> list[Path]:
    """Complete backups under `root`, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if NAME_RE.match(p.name) and p.is_dir())


def prune(root: Path, keep: int) -> list[str]:
    """Remove complete backups beyond the newest `keep`; the names removed."""
    removed = []
    for old in complete_backups(root)[:-keep]:
        remove_tree(old)
        removed.append(old.name)
    return removed


def read_manifest(backup: Path) -> dict[str, Any]:
    """The manifest of a complete backup; `InvalidArgument` saying what is wrong otherwise."""
    try:
        manifest = json.loads((backup / MANIFEST).read_text())
    except FileNotFoundError:
        raise InvalidArgument(
            f"{backup} is not a wasupd backup (no {MANIFEST}); name a directory made by"
            " `wasupctl backup`"
        ) from None
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"{backup / MANIFEST} cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidArgument(f"{backup} is not a {FORMAT} backup")
    if int(manifest.get("schema", 0)) > SCHEMA_VERSION:
        raise InvalidArgument(
            f"{backup} was made by a newer wasupd (schema {manifest['schema']}, this one knows up"
            f" to {SCHEMA_VERSION}); restore it with that version or newer"
        )
    files = dict(manifest.get("files", {}))
    if DB_NAME not in files:
        raise InvalidArgument(f"{backup} is damaged: its manifest lists no {DB_NAME}")
    for rel, size in files.items():
        if not FILE_RE.match(rel):
            raise InvalidArgument(f"{backup} is damaged: unexpected file {rel!r} in its manifest")
        path = backup / rel
        if not path.is_file() or path.stat().st_size != size:
            raise InvalidArgument(
                f"{backup} is damaged: {rel} is missing or not {size} bytes; use another backup"
            )
    return manifest


def restore_backup(
    backup: Path, state_dir: Path, live_root: Path, keyring: Keyring, *, now: float
) -> Path:
    """Replace `state_dir`'s database and archives with those of `backup` (the daemon must be
    stopped); blocking. Everything is checked first: the manifest, each file's size, each
    archive authenticated with `keyring`, and no live profile left in `live_root` by a crash
    (the next start would seal it over the restored archive). What was there before is moved,
    not deleted, to `<state_dir>/replaced-<time>`, which is returned."""
    manifest = read_manifest(backup)
    left = sorted(p.name for p in live_root.iterdir()) if live_root.is_dir() else []
    if left:
        raise InvalidState(
            f"live profiles left by a daemon that did not stop cleanly: {', '.join(left)} in"
            f" {live_root}; start and stop wasupd once (it seals them), then restore"
        )
    for rel in manifest["files"]:
        if rel.startswith("profiles/"):
            archive.verify(backup / rel, keyring, Path(rel).name.removesuffix(archive.SUFFIX))
    aside = state_dir / ("replaced-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)))
    if aside.exists():
        raise InvalidState(f"{aside} already exists; wait a second and run the restore again")
    # Copy first (where a full disk would stop it), then swap by renames: an error before the
    # swap leaves the state dir as it was.
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    owner = state_dir.stat()  # run as root, files must still belong to the daemon's user
    staging = state_dir / ".restore-partial"
    remove_tree(staging)
    (staging / "profiles").mkdir(parents=True, mode=0o700)
    _own(staging / "profiles", owner)
    for rel in manifest["files"]:
        dest = staging / rel
        shutil.copy2(backup / rel, dest)
        with open(dest, "rb") as fh:
            os.fsync(fh.fileno())
        _own(dest, owner)
    fsync_dir(staging / "profiles")
    fsync_dir(staging)
    aside.mkdir(mode=0o700)
    _own(aside, owner)
    for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", "profiles"):
        if (state_dir / name).exists():
            os.rename(state_dir / name, aside / name)
    os.rename(staging / DB_NAME, state_dir / DB_NAME)
    os.rename(staging / "profiles", state_dir / "profiles")
    staging.rmdir()
    fsync_dir(state_dir)
    return aside


def _own(path: Path, owner: os.stat_result) -> None:
    if os.geteuid() == 0:
        os.chown(path, owner.st_uid, owner.st_gid)
