"""Sealed profile archives (`<session>.wasup`): a profile's essential files in one encrypted file.

The encrypted framing (header, chunks, keys in the AAD) is in `wasupd.profiles.stream`. Inside
it, the files are a plain record stream::

    file = "F" | u16 n | path (n bytes, relative, "/"-separated) | u64 mtime (ns) | u64 size | data
    end  = "E"                    (must be the last byte of the final chunk)

Only regular files are recorded: an archive cannot express a symlink, a device, an absolute
path or "..", and unsealing refuses any path that tries. Directories are implied (0700), files
are created 0600 with O_EXCL inside a fresh temp dir that is renamed into place only after the
final chunk verified, so a failure leaves nothing behind. Archives are replaced atomically
(`fsutil.atomic_file`), under a per-archive lock so that a re-key never overwrites a newer
checkpoint with older contents.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from wasupd.errors import KeyUnavailable, ProfileError
from wasupd.paths import ARCHIVE_SUFFIX
from wasupd.profiles.fsutil import atomic_file, flocked, temp_name
from wasupd.profiles.keys import Keyring
from wasupd.profiles.selection import essential_files
from wasupd.profiles.stream import (
    CHUNK_SIZE,
    ChunkReader,
    ChunkWriter,
    Header,
    make_header,
    read_header,
    reencrypt,
)

SUFFIX = ARCHIVE_SUFFIX
_U16 = struct.Struct(">H")
_META = struct.Struct(">QQ")
_COPY = 1 << 20
MAX_DEPTH = 64


@contextlib.contextmanager
def archive_lock(archive: Path) -> Iterator[None]:
    """Serialise writers of one archive (checkpoints, re-keys, imports) across threads and
    processes: an flock on the hidden sibling `.<name>.lock`."""
    archive.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with flocked(archive.with_name(f".{archive.name}.lock")):
        yield


def _open_file(path: Path) -> tuple[int, os.stat_result] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, OSError):
        return None  # vanished or became a symlink while we walked: not part of the profile
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


def _write_files(writer: ChunkWriter, root: Path, files: Iterable[Path]) -> None:
    for rel in files:
        opened = _open_file(root / rel)
        if opened is None:
            continue
        fd, st = opened
        with os.fdopen(fd, "rb", buffering=0) as fh:
            name = os.fsencode(rel.as_posix())
            writer.write(
                b"F" + _U16.pack(len(name)) + name + _META.pack(st.st_mtime_ns, st.st_size)
            )
            if writer.fill_from(fh, st.st_size) != st.st_size:
                raise ProfileError(f"{root / rel} shrank while it was being sealed; try again")
    writer.write(b"E")


def seal_dir(
    src: Path,
    dest: Path,
    keyring: Keyring,
    session: str,
    *,
    files: Iterable[Path] | None = None,
    level: int = 1,
    chunk_size: int = CHUNK_SIZE,
) -> int:
    """Seal the essential files of `src` (or exactly `files`, relative to it) into `dest` under
    the keyring's current key; the archive's size in bytes.

    Atomic: the previous `dest` stays intact and openable until the new one is complete and
    durable (temp file, fsync, rename, fsync of the directory).
    """
    with archive_lock(dest), atomic_file(dest) as out:
        seal_to(out, src, keyring, session, files=files, level=level, chunk_size=chunk_size)
    return dest.stat().st_size


def seal_to(
    out: BinaryIO,
    src: Path,
    keyring: Keyring,
    session: str,
    *,
    files: Iterable[Path] | None = None,
    level: int = 1,
    chunk_size: int = CHUNK_SIZE,
) -> None:
    """Write an archive of `src` (as `seal_dir`) to the open binary stream `out`, not closed."""
    header = make_header(keyring.current_id, session, chunk_size)
    writer = ChunkWriter(out, header, keyring.current, level=level)
    _write_files(writer, src, essential_files(src) if files is None else files)
    writer.close()


def inspect(path: Path) -> Header:
    """The header of an archive, read without a key (not yet authenticated: `verify` does that)."""
    with _open_archive(path) as fh:
        return read_header(fh, str(path))


def _open_archive(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise ProfileError(f"cannot open archive {path}: {exc.strerror}", path=str(path)) from None


def key_for(header: Header, keyring: Keyring, session: str | None, path: Path) -> bytes:
    """The key that opens `header`; `ProfileError` for another session's archive,
    `KeyUnavailable` when the key file lacks the archive's key."""
    if session is not None and header.session != session:
        raise ProfileError(
            f"{path} was sealed for session {header.session!r}, not {session!r}",
            path=str(path),
        )
    key = keyring.keys.get(header.key_id)
    if key is None:
        raise KeyUnavailable(
            f"{path} is sealed under key id {header.key_id}, which is not in the key file"
            f" {keyring.source or ''} (it holds {', '.join(keyring.keys)}): put that key back"
            " in the key file; the archive is left as it is",
            path=str(path),
            key_id=header.key_id,
        )
    return key


def _safe_path(raw: bytes, reader: ChunkReader) -> str:
    parts = raw.split(b"/")
    if (
        not raw
        or len(parts) > MAX_DEPTH
        or any(p in (b"", b".", b"..") or b"\0" in p for p in parts)
    ):
        raise ProfileError(
            f"{reader.path}: refusing unsafe path {raw[:200]!r} in the archive", path=reader.path
        )
    return os.fsdecode(raw)


def _make_parents(root: Path, rel: str, made: set[str], reader: ChunkReader) -> None:
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        if sub in made:
            continue
        try:
            os.mkdir(root / sub, 0o700)
        except FileExistsError:
            raise ProfileError(
                f"{reader.path}: {sub!r} is both a file and a directory", path=reader.path
            ) from None
        made.add(sub)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _copy_out(reader: ChunkReader, fd: int | None, size: int, rel: str) -> None:
    left = size
    while left:
        piece = reader.read(min(left, _COPY))
        if not piece:
            raise ProfileError(f"{reader.path}: contents end inside {rel!r}", path=reader.path)
        if fd is not None:
            _write_all(fd, piece)
        left -= len(piece)


def _create(root: Path, rel: str, reader: ChunkReader) -> int:
    try:
        return os.open(
            root / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except (FileExistsError, IsADirectoryError):
        raise ProfileError(f"{reader.path}: {rel!r} appears twice", path=reader.path) from None


def _extract_one(reader: ChunkReader, root: Path | None, made: set[str]) -> None:
    (n,) = _U16.unpack(reader.read_exact(2, "a record"))
    rel = _safe_path(reader.read_exact(n, "a file name"), reader)
    mtime, size = _META.unpack(reader.read_exact(_META.size, "a record"))
    if root is None:  # verifying only
        _copy_out(reader, None, size, rel)
        return
    _make_parents(root, rel, made, reader)
    fd = _create(root, rel, reader)
    try:
        _copy_out(reader, fd, size, rel)
    finally:
        os.close(fd)
    os.utime(root / rel, ns=(mtime, mtime), follow_symlinks=False)


def _extract(reader: ChunkReader, root: Path | None) -> int:
    """Walk the record stream, writing files under `root` (or only checking when None)."""
    made: set[str] = set()
    count = 0
    while (kind := reader.read_exact(1, "a record")) == b"F":
        _extract_one(reader, root, made)
        count += 1
    if kind != b"E":
        raise ProfileError(f"{reader.path}: unknown record type {kind!r}", path=reader.path)
    if reader.read(1):
        raise ProfileError(f"{reader.path}: data after the end record", path=reader.path)
    return count


def unseal(path: Path, dest: Path, keyring: Keyring, session: str | None) -> Header:
    """Verify and extract archive `path` into the new directory `dest` (0700); its header.

    All or nothing: files go to a hidden temp dir beside `dest`, renamed to `dest` only after the
    final chunk authenticated. `session` (when given) must be the name in the header. `dest`
    must not exist. The archive itself is only read.
    """
    if dest.exists():
        raise FileExistsError(f"{dest} exists; unseal needs a new directory")
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _open_archive(path) as fh:
        header = read_header(fh, str(path))
        key = key_for(header, keyring, session, path)
        tmp = temp_name(dest, "unseal")
        os.mkdir(tmp, 0o700)
        try:
            _extract(ChunkReader(fh, header, key, str(path)), tmp)
            os.rename(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return header


def verify(path: Path, keyring: Keyring, session: str | None = None) -> Header:
    """Authenticate every chunk and check every record of an archive without writing anything;
    its header. Raises as `unseal` would."""
    with _open_archive(path) as fh:
        header = read_header(fh, str(path))
        key = key_for(header, keyring, session, path)
        _extract(ChunkReader(fh, header, key, str(path)), None)
    return header


def reseal(
    path: Path, keyring: Keyring, *, session: str | None = None, dest: Path | None = None
) -> bool:
    """Re-seal archive `path` under the current key (and as `session`, when given) into `dest`
    (default: in place, atomically); False when nothing had to change.

    Chunks are decrypted, authenticated and encrypted again one at a time in memory: no
    plaintext reaches the disk. A damaged archive raises and is left untouched.
    """
    target = dest or path
    with archive_lock(target), _open_archive(path) as fh:
        header = read_header(fh, str(path))
        key = key_for(header, keyring, None, path)
        name = session or header.session
        if dest is None and header.key_id == keyring.current_id and name == header.session:
            return False
        new = make_header(keyring.current_id, name, header.chunk_size)
        with atomic_file(target) as out:
            writer = ChunkWriter(out, new, keyring.current, level=0)
            reencrypt(ChunkReader(fh, header, key, str(path)), writer)
    return True


__all__ = [
    "SUFFIX",
    "Header",
    "archive_lock",
    "inspect",
    "key_for",
    "reseal",
    "seal_dir",
    "seal_to",
    "unseal",
    "verify",
]
