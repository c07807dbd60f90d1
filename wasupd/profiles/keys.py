"""Profile keys: 32-byte AES-256 keys in a key file (0600, owned by the daemon's user).

Format, one key per line, the first line is the current key and the others are still accepted
(that is how rotation works):

    wasupd-key-v1 <key id> <base64 of 32 bytes>

The key id is the first 16 hex digits of SHA-256 of the key; archives record it in their header.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from wasupd.errors import KeyUnavailable

PREFIX = "wasupd-key-v1"
KEY_BYTES = 32


def key_id(key: bytes) -> str:
    """The id recorded in archive headers."""
    return hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Keyring:
    """The current key and every key still accepted, by id."""

    current_id: str
    keys: dict[str, bytes]

    @property
    def current(self) -> bytes:
        """The key new archives are sealed with."""
        return self.keys[self.current_id]


def _line(key: bytes) -> str:
    return f"{PREFIX} {key_id(key)} {base64.b64encode(key).decode()}\n"


def _check_permissions(path: Path, st: os.stat_result) -> None:
    if st.st_mode & 0o077:
        raise KeyUnavailable(
            f"key file {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must not be readable by"
            f" group or others: run `chmod 600 {path}`",
            path=str(path),
        )
    if st.st_uid != os.geteuid():
        raise KeyUnavailable(
            f"key file {path} is owned by uid {st.st_uid}, not by the daemon's user (uid"
            f" {os.geteuid()}): run `chown {os.geteuid()} {path}`",
            path=str(path),
        )


def load_keyring(path: Path) -> Keyring:
    """Read and check the key file; `KeyUnavailable` with what to do when it cannot be used."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyUnavailable(
            f"profile key {path} does not exist: create it with `wasupd keygen {path}`"
            " (and keep a backup: archives cannot be opened without it)",
            path=str(path),
        ) from None
    except OSError as exc:
        raise KeyUnavailable(
            f"cannot open profile key {path}: {exc.strerror}", path=str(path)
        ) from None
    with os.fdopen(fd, "r", encoding="ascii", errors="replace") as fh:
        # systemd credentials are owned by root and 0400 in a private directory: trust them.
        if not str(path).startswith(os.environ.get("CREDENTIALS_DIRECTORY", "\0")):
            _check_permissions(path, os.fstat(fh.fileno()))
        lines = [
            ln.split() for ln in fh.read().splitlines() if ln.strip() and not ln.startswith("#")
        ]
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for n, parts in enumerate(lines, 1):
        if len(parts) != 3 or parts[0] != PREFIX:
            raise KeyUnavailable(
                f"key file {path} line {n}: expected '{PREFIX} <id> <base64>'", path=str(path)
            )
        try:
            key = base64.b64decode(parts[2], validate=True)
        except ValueError:
            raise KeyUnavailable(f"key file {path} line {n}: bad base64", path=str(path)) from None
        if len(key) != KEY_BYTES or key_id(key) != parts[1]:
            raise KeyUnavailable(
                f"key file {path} line {n}: not a valid 32-byte key", path=str(path)
            )
        keys[parts[1]] = key
        order.append(parts[1])
    if not order:
        raise KeyUnavailable(f"key file {path} holds no key", path=str(path))
    return Keyring(order[0], keys)


def generate_key_file(path: Path) -> str:
    """Create a new key file (0600, refusing to overwrite); the new key's id."""
    key = secrets.token_bytes(KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise KeyUnavailable(
            f"{path} already exists; use `wasupd keygen --add` to rotate, or remove it first",
            path=str(path),
        ) from None
    with os.fdopen(fd, "w") as fh:
        fh.write(_line(key))
        fh.flush()
        os.fsync(fh.fileno())
    return key_id(key)


def add_key(path: Path) -> str:
    """Put a new current key at the top of an existing key file (old keys stay accepted)."""
    ring = load_keyring(path)
    key = secrets.token_bytes(KEY_BYTES)
    body = _line(key) + "".join(_line(ring.keys[k]) for k in ring.keys)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return key_id(key)
