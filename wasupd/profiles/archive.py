"""The sealed profile archive (`<session>.wasup`), format version 1.

    header  = b"WASUPARC" | u8 version | u8 len | key id | u8 len | session | 8-byte nonce prefix
    chunk*  = u32 length | AES-256-GCM ciphertext (+16-byte tag)
    nonce   = nonce prefix | u32 chunk index
    AAD     = SHA-256(header) | u32 chunk index | u8 final flag

Each chunk's plaintext is one flag byte (0 stored, 1 zlib) and up to `CHUNK` bytes of a tar
stream of the profile's essential files. The AAD binds every chunk to this header, its position
and whether it is the last one, so a flipped bit, a swapped or reordered chunk, a chunk from
another archive, a cut-off file and a renamed session are all detected. Memory stays flat:
both directions stream chunk by chunk. Writes are atomic (temp file, fsync, rename, fsync dir).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import shutil
import struct
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wasupd.errors import KeyUnavailable, ProfileError
from wasupd.profiles.keys import Keyring, key_id

MAGIC = b"WASUPARC"
VERSION = 1
CHUNK = 1 << 20
_LEN = struct.Struct(">I")

# What WhatsApp needs to restore its link, and what Chromium needs to open it.
ESSENTIAL = (
    "Local State",
    "Default/Preferences",
    "Default/IndexedDB",
    "Default/Local Storage",
    "Default/Session Storage",
    "Default/Service Worker/Database",
    "Default/databases",
)
SKIP_NAMES = frozenset(
    {"LOCK", "SingletonLock", "SingletonCookie", "SingletonSocket", ".wasupd.lock"}
)


@dataclass(frozen=True, slots=True)
class Header:
    """The authenticated header of an archive."""

    version: int
    key_id: str
    session: str
    nonce_prefix: bytes
    raw: bytes

    @property
    def digest(self) -> bytes:
        """SHA-256 of the header bytes, part of every chunk's AAD."""
        return hashlib.sha256(self.raw).digest()


def _make_header(kid: str, session: str) -> Header:
    prefix = secrets.token_bytes(8)
    k, s = kid.encode(), session.encode()
    raw = MAGIC + bytes([VERSION, len(k)]) + k + bytes([len(s)]) + s + prefix
    return Header(VERSION, kid, session, prefix, raw)


def read_header(fh: io.BufferedReader, path: Path) -> Header:
    """Parse the header; `ProfileError` naming what is wrong."""
    start = fh.read(len(MAGIC) + 2)
    if len(start) < len(MAGIC) + 2 or not start.startswith(MAGIC):
        raise ProfileError(f"{path} is not a wasupd profile archive (bad magic)", path=str(path))
    version, klen = start[len(MAGIC)], start[len(MAGIC) + 1]
    if version != VERSION:
        raise ProfileError(
            f"{path} has archive format {version}; this wasupd reads {VERSION}", path=str(path)
        )
    k = fh.read(klen)
    slen_b = fh.read(1)
    s = fh.read(slen_b[0]) if slen_b else b""
    prefix = fh.read(8)
    if len(k) != klen or not slen_b or len(s) != slen_b[0] or len(prefix) != 8:
        raise ProfileError(f"{path}: archive truncated inside its header", path=str(path))
    raw = start + k + slen_b + s + prefix
    return Header(version, k.decode(errors="replace"), s.decode(errors="replace"), prefix, raw)


def _aad(h: Header, index: int, final: bool) -> bytes:
    return h.digest + _LEN.pack(index) + bytes([final])


def _nonce(h: Header, index: int) -> bytes:
    return h.nonce_prefix + _LEN.pack(index)


class _SealingWriter(io.RawIOBase):
    """A write-only file object that encrypts what is written in chunks to `out`."""

    def __init__(self, out: io.BufferedWriter, header: Header, key: bytes) -> None:
        self.out, self.header, self.aead = out, header, AESGCM(key)
        self.buf = bytearray()
        self.index = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.buf += data
        while len(self.buf) > CHUNK:
            self._emit(bytes(self.buf[:CHUNK]), final=False)
            del self.buf[:CHUNK]
        return len(data)

    def _emit(self, plain: bytes, *, final: bool) -> None:
        body = b"\0" + plain
        # Compress only what compresses: LevelDB tables are already snappy-compressed, and
        # trying zlib on them costs 30x the encryption. A 64 KiB sample decides.
        sample = plain[: 64 << 10]
        if sample and len(zlib.compress(sample, 1)) < len(sample) * 0.5:
            packed = zlib.compress(plain, 1)
            if len(packed) < len(plain) * 0.9:
                body = b"\1" + packed
        ct = self.aead.encrypt(
            _nonce(self.header, self.index), body, _aad(self.header, self.index, final)
        )
        self.out.write(_LEN.pack(len(ct)) + ct)
        self.index += 1

    def finish(self) -> None:
        """Write the remaining bytes as the final chunk."""
        self._emit(bytes(self.buf), final=True)
        self.buf.clear()


class _UnsealingReader(io.RawIOBase):
    """A read-only file object yielding the decrypted tar stream, verifying every chunk."""

    def __init__(self, fh: io.BufferedReader, header: Header, key: bytes, path: Path) -> None:
        self.fh, self.header, self.aead, self.path = fh, header, AESGCM(key), path
        self.index = 0
        self.pending = b""
        self.done = False

    def readable(self) -> bool:
        return True

    def _next(self) -> bytes:
        size_b = self.fh.read(4)
        if len(size_b) < 4:
            raise ProfileError(
                f"{self.path}: archive truncated after chunk {self.index - 1} (no final chunk)",
                path=str(self.path),
            )
        size = _LEN.unpack(size_b)[0]
        if size > CHUNK * 2 + 64:
            raise ProfileError(
                f"{self.path}: chunk {self.index} has an impossible length", path=str(self.path)
            )
        ct = self.fh.read(size)
        if len(ct) < size:
            raise ProfileError(
                f"{self.path}: archive truncated inside chunk {self.index}", path=str(self.path)
            )
        nonce = _nonce(self.header, self.index)
        for final in (False, True):
            with contextlib.suppress(InvalidTag):
                body = self.aead.decrypt(nonce, ct, _aad(self.header, self.index, final))
                break
        else:
            raise ProfileError(
                f"{self.path}: chunk {self.index} fails authentication (damaged, reordered, or"
                " sealed under another key)",
                path=str(self.path),
            )
        self.index += 1
        if final:
            self.done = True
            if self.fh.read(1):
                raise ProfileError(f"{self.path}: data after the final chunk", path=str(self.path))
        return zlib.decompress(body[1:]) if body[:1] == b"\1" else body[1:]

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self.pending and not self.done:
            self.pending = self._next()
        n = min(len(b), len(self.pending))
        b[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def essential_files(root: Path) -> Iterator[Path]:
    """The files of a profile worth keeping (relative paths), caches and locks excluded."""
    for rel in ESSENTIAL:
        top = root / rel
        if top.is_file() and not top.is_symlink():
            yield Path(rel)
        elif top.is_dir() and not top.is_symlink():
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames.sort()
                for name in sorted(filenames):
                    p = Path(dirpath) / name
                    if name in SKIP_NAMES or p.is_symlink() or not p.is_file():
                        continue
                    yield p.relative_to(root)


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename in it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def seal_dir(
    src: Path, dest: Path, keyring: Keyring, session: str, files: list[Path] | None = None
) -> int:
    """Seal the essential files of `src` into `dest` atomically; the archive's size in bytes.

    The previous `dest` stays intact until the new one is complete and durable.
    """
    header = _make_header(keyring.current_id, session)
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(header.raw)
            writer = _SealingWriter(out, header, keyring.current)
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for rel in files if files is not None else essential_files(src):
                    with contextlib.suppress(FileNotFoundError):  # vanished while we walked
                        tar.add(src / rel, arcname=str(rel), recursive=False)
            writer.finish()
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return dest.stat().st_size


def inspect(path: Path) -> Header:
    """The header of an archive (no key needed)."""
    with open(path, "rb") as fh:
        return read_header(fh, path)


def _checked_reader(
    fh: io.BufferedReader, path: Path, keyring: Keyring, session: str | None
) -> _UnsealingReader:
    """Read the header, check its session and key id, and return the verifying reader."""
    header = read_header(fh, path)
    if session is not None and header.session != session:
        raise ProfileError(
            f"{path} was sealed for session {header.session!r}, not {session!r}", path=str(path)
        )
    if header.key_id not in keyring.keys:
        raise KeyUnavailable(
            f"{path} is sealed under key {header.key_id}, which is not in the key file"
            f" (it has {', '.join(keyring.keys)}); restore the matching key",
            path=str(path),
        )
    return _UnsealingReader(fh, header, keyring.keys[header.key_id], path)


def unseal(path: Path, dest: Path, keyring: Keyring, session: str | None) -> None:
    """Verify and extract `path` into the new directory `dest` (0700), all or nothing.

    Extraction goes to a temp dir beside `dest`, renamed into place only when every chunk
    verified; `session` (when given) must match the header.
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed in finally
    except OSError as exc:
        raise ProfileError(f"cannot open archive {path}: {exc.strerror}", path=str(path)) from None
    tmp = dest.with_name(f".{dest.name}.unseal.{secrets.token_hex(4)}")
    try:
        reader = _checked_reader(fh, path, keyring, session)
        tmp.mkdir(mode=0o700)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for member in tar:
                    if not member.isfile() and not member.isdir():
                        raise ProfileError(
                            f"{path}: unexpected entry {member.name!r}", path=str(path)
                        )
                    tar.extract(member, tmp, filter="data")
            while not reader.done:  # the tar end marker may precede the final chunk
                reader.pending = b""
                reader.pending = reader._next()
        except tarfile.TarError as exc:
            raise ProfileError(f"{path}: damaged contents ({exc})", path=str(path)) from None
        os.replace(tmp, dest)
    finally:
        fh.close()
        shutil.rmtree(tmp, ignore_errors=True)


def verify(path: Path, keyring: Keyring, session: str | None = None) -> Header:
    """Check every chunk of an archive without extracting it; its header."""
    with open(path, "rb") as fh:
        reader = _checked_reader(fh, path, keyring, session)
        while not reader.done:
            reader._next()
    return reader.header


def reseal(path: Path, keyring: Keyring, session: str, work: Path) -> bool:
    """Re-seal `path` under the current key if it uses another; True if it was rewritten."""
    header = inspect(path)
    if header.key_id == keyring.current_id:
        return False
    tmpdir = work / f".rekey-{secrets.token_hex(4)}"
    try:
        unseal(path, tmpdir, keyring, session)
        seal_dir(tmpdir, path, keyring, session, files=sorted(_all_files(tmpdir)))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return True


def _all_files(root: Path) -> Iterator[Path]:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            yield (Path(dirpath) / name).relative_to(root)


__all__ = ["Header", "inspect", "key_id", "reseal", "seal_dir", "unseal", "verify"]
