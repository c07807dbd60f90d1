"""Moving sealed archives between hosts (export/import) and re-sealing them under a new key.

Everything here works on sealed bytes: an export is a byte copy, an import and a re-key
decrypt one chunk at a time in memory and encrypt it again. No plaintext reaches the disk.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from wasupd.errors import InvalidState, WasupError
from wasupd.profiles import archive
from wasupd.profiles.fsutil import atomic_file
from wasupd.profiles.keys import Keyring
from wasupd.profiles.stream import Header


def export_archive(archive_path: Path, dest: Path) -> int:
    """Copy a session's sealed archive to `dest` (atomically; still encrypted); its size.

    The source is opened once and copied from that open file: a checkpoint replacing the
    archive meanwhile (by rename) cannot mix two archives into the copy.
    """
    try:
        src = open(archive_path, "rb")  # noqa: SIM115 - closed by the with statement below
    except FileNotFoundError:
        raise InvalidState(
            f"{archive_path} does not exist: the session has no sealed profile yet",
            path=str(archive_path),
        ) from None
    with src, atomic_file(dest) as out:
        shutil.copyfileobj(src, out, 1 << 20)
    return dest.stat().st_size


def import_archive(
    src: Path, archive_path: Path, keyring: Keyring, session: str, *, replace: bool = False
) -> Header:
    """Install the archive `src` as `session`'s archive at `archive_path`; its new header.

    Every chunk and record of `src` is verified with `keyring` first; a damaged file or one
    sealed under a key the keyring lacks raises (`ProfileError`, `KeyUnavailable`) and nothing
    changes. The installed copy is re-sealed under the current key and named `session` (so an
    archive can be imported under another name). An existing archive is only replaced with
    `replace`.
    """
    archive.verify(src, keyring)
    if archive_path.exists() and not replace:
        raise InvalidState(
            f"{archive_path} exists; replace it explicitly (--replace)", path=str(archive_path)
        )
    archive.reseal(src, keyring, session=session, dest=archive_path)
    return archive.inspect(archive_path)


@dataclass
class RekeyReport:
    """What `rekey_archives` did, by session name."""

    current_key: str
    resealed: list[str] = field(default_factory=list)
    already_current: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def rekey_archives(archive_root: Path, keyring: Keyring) -> RekeyReport:
    """Re-seal every archive in `archive_root` whose key is not the current one (atomically,
    one file at a time, old keys still accepted meanwhile). A damaged archive or one under a
    key no longer in the key file is reported in `failed` and left as it is."""
    report = RekeyReport(keyring.current_id)
    for path in sorted(archive_root.glob(f"*{archive.SUFFIX}")):
        name = path.name.removesuffix(archive.SUFFIX)
        if name.startswith("."):
            continue
        try:
            changed = archive.reseal(path, keyring)
        except WasupError as exc:
            report.failed[name] = exc.message
            continue
        (report.resealed if changed else report.already_current).append(name)
    return report
