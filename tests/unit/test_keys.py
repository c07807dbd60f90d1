"""The profile key file: creation, permission and ownership checks, parsing, rotation."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from wasupd.errors import KeyUnavailable
from wasupd.profiles.keys import (
    PREFIX,
    add_key,
    generate_key_file,
    key_id,
    load_keyring,
    retire_keys,
)


def test_generate_creates_0600_with_one_valid_key_and_never_overwrites(tmp_path: Path) -> None:
    """keygen writes one `wasupd-key-v1 <id> <base64>` line, mode 0600, and refuses an existing file."""
    path = tmp_path / "etc" / "profile.key"
    kid = generate_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    prefix, line_id, b64 = path.read_text().split()
    key = base64.b64decode(b64)
    assert (prefix, line_id, len(key), key_id(key)) == (PREFIX, kid, 32, kid)
    before = path.read_bytes()
    with pytest.raises(
        KeyUnavailable, match="already exists; to rotate keys use `wasupd keygen --add"
    ):
        generate_key_file(path)
    assert path.read_bytes() == before
    ring = load_keyring(path)
    assert ring.current_id == kid and ring.current == key and ring.source == str(path)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_looser_permissions_are_refused_with_the_chmod_to_run(tmp_path: Path, mode: int) -> None:
    """A key file readable by group or others is refused, and the message gives the exact chmod."""
    path = tmp_path / "profile.key"
    generate_key_file(path)
    os.chmod(path, mode)
    with pytest.raises(KeyUnavailable) as err:
        load_keyring(path)
    assert f"has mode {mode:04o}" in err.value.message
    assert f"run `chmod 600 {path}`" in err.value.message


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_another_owner_is_refused_with_the_chown_to_run(tmp_path: Path) -> None:
    """A key file owned by another user is refused, naming the chown to run."""
    path = tmp_path / "profile.key"
    generate_key_file(path)
    os.chown(path, 65534, -1)
    with pytest.raises(
        KeyUnavailable, match=f"owned by uid 65534.*run `chown {os.geteuid()} {path}`"
    ):
        load_keyring(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_root_rotates_the_service_users_key_and_it_stays_theirs(tmp_path: Path) -> None:
    """keygen --add/--retire as root on a key owned by the service user: allowed, and the
    rewritten file keeps its owner; a daemon (not an admin command) still refuses it."""
    path = tmp_path / "profile.key"
    first = generate_key_file(path)
    os.chown(path, 65534, 65534)
    second = add_key(path)
    assert os.stat(path).st_uid == 65534 and os.stat(path).st_gid == 65534
    assert retire_keys(path) == [first]
    assert os.stat(path).st_uid == 65534 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert list(load_keyring(path, admin=True).keys) == [second]
    with pytest.raises(KeyUnavailable, match="owned by uid 65534"):
        load_keyring(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_systemd_credential_owned_by_root_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In $CREDENTIALS_DIRECTORY the owner is systemd's business: only the mode is checked."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    path = creds / "profile-key"
    kid = generate_key_file(path)
    os.chown(path, 65534, -1)
    os.chmod(path, 0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert load_keyring(path).current_id == kid
    os.chmod(path, 0o440)
    with pytest.raises(KeyUnavailable, match="chmod 600"):
        load_keyring(path)


def test_missing_key_says_how_to_create_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing key file names `wasupd keygen PATH` (and the credential under systemd)."""
    path = tmp_path / "nope.key"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(
        KeyUnavailable, match=f"does not exist: create it with `wasupd keygen {path}`"
    ):
        load_keyring(path)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(KeyUnavailable, match="LoadCredential=profile-key"):
        load_keyring(path)


def test_a_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    """The key file must be a regular file: a symlink (which could point anywhere) is not followed."""
    real = tmp_path / "real.key"
    generate_key_file(real)
    os.symlink(real, tmp_path / "link.key")
    with pytest.raises(KeyUnavailable, match="not a symlink"):
        load_keyring(tmp_path / "link.key")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no key"),
        ("# only a comment\n\n", "holds no key"),
        ("wasupd-key-v0 abc AAAA\n", "line 1: expected 'wasupd-key-v1 <id> <base64>'"),
        (f"{PREFIX} abc\n", "line 1: expected"),
        (f"{PREFIX} abc !!notbase64!!\n", "line 1: bad base64"),
        (
            f"{PREFIX} {key_id(b'x' * 16)} {base64.b64encode(b'x' * 16).decode()}\n",
            "not a valid 32-byte key",
        ),
        (
            f"# c\n{PREFIX} 0000000000000000 {base64.b64encode(b'x' * 32).decode()}\n",
            "line 2: not a valid",
        ),
    ],
)
def test_malformed_key_files_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    """Each malformed content is refused with the line and what was expected."""
    path = tmp_path / "k"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, text.encode())
    os.close(fd)
    with pytest.raises(KeyUnavailable, match=message):
        load_keyring(path)


def test_rotation_adds_a_current_key_then_retires_the_old_ones(tmp_path: Path) -> None:
    """--add puts a new key first and keeps the old one accepted; retire keeps only the current."""
    path = tmp_path / "profile.key"
    first = generate_key_file(path)
    second = add_key(path)
    ring = load_keyring(path)
    assert ring.current_id == second and list(ring.keys) == [second, first]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name != "profile.key"], "temp files left"
    assert retire_keys(path) == [first]
    assert list(load_keyring(path).keys) == [second]
    assert retire_keys(path) == []
