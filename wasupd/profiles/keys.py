"""Profile keys: 32-byte AES-256 keys in a key file (0600, owned by the daemon's user).

One key per line; the first line is the current key (new archives are sealed with it) and the
others are still accepted for opening archives, which is how rotation works::

    wasupd-key-v1 <key id> <base64 of 32 bytes>

The key id is the first 16 hex digits of SHA-256 of the key; archives record it in their
header. Blank lines and lines starting with "#" are ignored. Under systemd the file may come as
the credential `profile-key` (`$CREDENTIALS_DIRECTORY/profile-key`), which systemd owns.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wasupd.errors import KeyUnavailable
from wasupd.profiles.fsutil import atomic_file, fsync_dir, temp_name

PREFIX = "wasupd-key-v1"
KEY_BYTES = 32
CREDENTIAL = "profile-key"

KeyringLoader = Callable[[], "Keyring"]


def key_id(key: bytes) -> str:
    """The id recorded in archive headers (a fingerprint: it does not reveal the key)."""
    return hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Keyring:
    """The current key and every key still accepted, by id (in file order)."""

    current_id: str
    keys: dict[str, bytes]
    source: str = ""

    @property
    def current(self) -> bytes:
        """The key new archives are sealed with."""
        return self.keys[self.current_id]

    @classmethod
    def of(cls, *keys: bytes) -> Keyring:
        """A keyring from raw keys, the first current (for tools and tests)."""
        return cls(key_id(keys[0]), {key_id(k): k for k in keys})


def _line(key: bytes) -> str:
    return f"{PREFIX} {key_id(key)} {base64.b64encode(key).decode()}\n"


def _from_credentials(path: Path) -> bool:
    creds = os.environ.get("CREDENTIALS_DIRECTORY", "")
    return bool(creds) and path.parent.resolve() == Path(creds).resolve()


def _check_permissions(path: Path, st: os.stat_result, *, admin: bool = False) -> None:
    if st.st_mode & 0o077:
        raise KeyUnavailable(
            f"key file {path} has mode {stat.S_IMODE(st.st_mode):04o}: group and others must not"
            f" read it; run `chmod 600 {path}`",
            path=str(path),
        )
    # systemd owns the credentials it hands us (0400 in a private dir): only the mode matters.
    # Root rotating the service user's key (`admin`) need not own it; a daemon must.
    root_admin = admin and os.geteuid() == 0
    if st.st_uid != os.geteuid() and not root_admin and not _from_credentials(path):
        raise KeyUnavailable(
            f"key file {path} is owned by uid {st.st_uid}, not by the daemon's user (uid"
            f" {os.geteuid()}); run `chown {os.geteuid()} {path}`",
            path=str(path),
        )


def _missing(path: Path) -> KeyUnavailable:
    hint = f"create it with `wasupd keygen {path}`"
    if os.environ.get("CREDENTIALS_DIRECTORY"):
        hint += f" (or pass it as `LoadCredential={CREDENTIAL}:<file>` in the unit)"
    return KeyUnavailable(
        f"profile key {path} does not exist: {hint}, and keep a copy in a safe place: sealed"
        " profiles cannot be opened without it",
        path=str(path),
    )


def _read_key_file(path: Path, *, admin: bool = False) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _missing(path) from None
    except OSError as exc:
        raise KeyUnavailable(
            f"cannot open profile key {path}: {exc.strerror} (it must be a regular file, not a"
            " symlink, readable by the daemon's user)",
            path=str(path),
        ) from None
    with os.fdopen(fd, "rb") as fh:
        _check_permissions(path, os.fstat(fh.fileno()), admin=admin)
        return fh.read(1 << 16).decode("ascii", errors="replace")


def _parse_line(path: Path, n: int, line: str) -> bytes:
    parts = line.split()
    if len(parts) != 3 or parts[0] != PREFIX:
        raise KeyUnavailable(
            f"key file {path} line {n}: expected '{PREFIX} <id> <base64>'", path=str(path)
        )
    try:
        key = base64.b64decode(parts[2], validate=True)
    except (binascii.Error, ValueError):
        raise KeyUnavailable(f"key file {path} line {n}: bad base64", path=str(path)) from None
    if len(key) != KEY_BYTES or key_id(key) != parts[1]:
        raise KeyUnavailable(
            f"key file {path} line {n}: not a valid {KEY_BYTES}-byte key (or its id does not"
            " match it)",
            path=str(path),
        )
    return key


def load_keyring(path: Path, *, admin: bool = False) -> Keyring:
    """Read and check the key file; `KeyUnavailable` saying what to do when it cannot be used.
    With `admin` (key rotation commands) root may read a key owned by the service user."""
    keys: dict[str, bytes] = {}
    for n, line in enumerate(_read_key_file(path, admin=admin).splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            key = _parse_line(path, n, line)
            keys.setdefault(key_id(key), key)
    if not keys:
        raise KeyUnavailable(
            f"key file {path} holds no key; create one with `wasupd keygen`", path=str(path)
        )
    return Keyring(next(iter(keys)), keys, str(path))


def keyring_loader(path: Path) -> KeyringLoader:
    """A loader that reads `path` each time (so a fixed key file is picked up without restart)."""
    return lambda: load_keyring(path)


def generate_key_file(path: Path) -> str:
    """Create a new key file holding one fresh key (0600, refusing to overwrite); its key id.

    Atomic: the key is written and fsynced under a hidden temp name, then hard-linked to `path`
    (which fails if `path` exists), so `path` is either absent or complete, even after a crash
    or beside a concurrent `wasupd keygen`."""
    key = secrets.token_bytes(KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = temp_name(path, "new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(_line(key))
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path, follow_symlinks=False)
    except FileExistsError:
        raise KeyUnavailable(
            f"{path} already exists; to rotate keys use `wasupd keygen --add {path}`",
            path=str(path),
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return key_id(key)


def from_credentials(path: Path) -> bool:
    """True when `path` is the systemd credential (`$CREDENTIALS_DIRECTORY`): systemd owns it,
    so it is only ever read, never created or rewritten by wasupd."""
    return _from_credentials(path)


def _rewrite(path: Path, keys: list[bytes]) -> None:
    """Replace the key file atomically, keeping its owner (root rotating the service user's
    key must not leave a file that user cannot read)."""
    st = path.stat()
    with atomic_file(path) as fh:
        if os.geteuid() == 0:
            os.fchown(fh.fileno(), st.st_uid, st.st_gid)
        fh.write("".join(_line(k) for k in keys).encode())


def add_key(path: Path) -> str:
    """Rotation, step 1: put a fresh key first in an existing key file (the old ones stay
    accepted); its id. Then re-seal (`profiles rekey`), then `retire_keys`."""
    ring = load_keyring(path, admin=True)
    key = secrets.token_bytes(KEY_BYTES)
    _rewrite(path, [key, *ring.keys.values()])
    return key_id(key)


def retire_keys(path: Path) -> list[str]:
    """Rotation, last step: keep only the current key in the key file; the ids removed.
    Only after every archive was re-sealed: archives under a retired key cannot be opened."""
    ring = load_keyring(path, admin=True)
    old = [k for k in ring.keys if k != ring.current_id]
    if old:
        _rewrite(path, [ring.current])
    return old
