"""The sealed archive format and the key file: round trips, and every kind of damage detected."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasupd.errors import KeyUnavailable, ProfileError
from wasupd.profiles import archive
from wasupd.profiles.keys import add_key, generate_key_file, load_keyring

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..") and s not in archive.SKIP_NAMES
)
trees = st.dictionaries(
    st.lists(names, min_size=1, max_size=3).map(tuple), st.binary(max_size=3000), max_size=8
)


def make_profile(root: Path, files: dict[tuple[str, ...], bytes]) -> dict[str, bytes]:
    """Write files under Default/IndexedDB (an essential dir); their relative paths and bytes."""
    out = {}
    for parts, data in files.items():
        rel = Path("Default/IndexedDB", *parts)
        path = root / rel
        if any(p.is_file() for p in path.parents if p != root and str(p).startswith(str(root))):
            continue
        if path.is_dir():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out[str(rel)] = data
    return out


def read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    path = tmp_path / "k" / "profile.key"
    generate_key_file(path)
    return path


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(files=trees)
def test_round_trip_of_arbitrary_trees(
    tmp_path_factory: pytest.TempPathFactory, files: dict[tuple[str, ...], bytes]
) -> None:
    """Any file tree under an essential dir seals and unseals to exactly the same bytes."""
    tmp = tmp_path_factory.mktemp("rt")
    key = tmp / "key"
    generate_key_file(key)
    ring = load_keyring(key)
    src = tmp / "src"
    src.mkdir()
    expected = make_profile(src, files)
    archive.seal_dir(src, tmp / "a.wasup", ring, "s")
    archive.unseal(tmp / "a.wasup", tmp / "out", ring, "s")
    assert read_tree(tmp / "out") == expected


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A multi-chunk archive (2.5 MiB of incompressible data) and its key file."""
    tmp = tmp_path_factory.mktemp("sealed")
    key = tmp / "key"
    generate_key_file(key)
    src = tmp / "src"
    (src / "Default/IndexedDB").mkdir(parents=True)
    (src / "Default/IndexedDB/big").write_bytes(os.urandom(5 << 19))
    (src / "Local State").write_text("{}")
    archive.seal_dir(src, tmp / "a.wasup", load_keyring(key), "s")
    return tmp / "a.wasup", key


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_any_single_byte_corruption_is_detected(
    tmp_path_factory: pytest.TempPathFactory, sealed: tuple[Path, Path], where: float, bit: int
) -> None:
    """Flipping any bit anywhere in the file makes unseal fail with ProfileError."""
    src, key = sealed
    data = bytearray(src.read_bytes())
    data[int(where * len(data))] ^= 1 << bit
    bad = tmp_path_factory.mktemp("c") / "bad.wasup"
    bad.write_bytes(bytes(data))
    with pytest.raises((ProfileError, KeyUnavailable)):
        archive.unseal(bad, bad.parent / "out", load_keyring(key), "s")
    assert not (bad.parent / "out").exists()


def chunks(data: bytes, header_len: int) -> list[tuple[int, int]]:
    out, pos = [], header_len
    while pos < len(data):
        size = struct.unpack(">I", data[pos : pos + 4])[0]
        out.append((pos, pos + 4 + size))
        pos += 4 + size
    return out


def test_truncation_swap_wrong_key_missing_key(tmp_path: Path, sealed: tuple[Path, Path]) -> None:
    """Each kind of damage has its own precise message, and the archive file is never changed."""
    src, key = sealed
    data = src.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    header_len = len(archive.inspect(src).raw)
    spans = chunks(data, header_len)
    assert len(spans) >= 3
    ring = load_keyring(key)
    cases = {
        "truncated": data[: spans[-1][0]],
        "inside": data[:-10],
        "swapped": data[:header_len]
        + data[spans[1][0] : spans[1][1]]
        + data[spans[0][0] : spans[0][1]]
        + data[spans[1][1] :],
    }
    messages = {}
    for label, blob in cases.items():
        path = tmp_path / f"{label}.wasup"
        path.write_bytes(blob)
        with pytest.raises(ProfileError) as err:
            archive.unseal(path, tmp_path / f"out-{label}", ring, "s")
        messages[label] = err.value.message
    assert "truncated after chunk" in messages["truncated"]
    assert "truncated inside chunk" in messages["inside"]
    assert "fails authentication" in messages["swapped"]
    other = tmp_path / "other.key"
    generate_key_file(other)
    with pytest.raises(KeyUnavailable, match="not in the key file"):
        archive.unseal(src, tmp_path / "o1", load_keyring(other), "s")
    with pytest.raises(ProfileError, match="sealed for session 's', not 'x'"):
        archive.unseal(src, tmp_path / "o2", ring, "x")
    with pytest.raises(KeyUnavailable, match="wasupd keygen"):
        load_keyring(tmp_path / "missing.key")
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest


def test_key_file_permissions_and_rotation(tmp_path: Path) -> None:
    """A 0644 key file is refused with the chmod to run; --add rotates and old archives still open."""
    key = tmp_path / "profile.key"
    first = generate_key_file(key)
    with pytest.raises(KeyUnavailable, match="already exists"):
        generate_key_file(key)
    os.chmod(key, 0o644)
    with pytest.raises(KeyUnavailable, match=f"chmod 600 {key}"):
        load_keyring(key)
    os.chmod(key, 0o600)
    src = tmp_path / "src"
    (src / "Default/Local Storage").mkdir(parents=True)
    (src / "Default/Local Storage/x").write_bytes(b"secret")
    archive.seal_dir(src, tmp_path / "a.wasup", load_keyring(key), "s")
    second = add_key(key)
    ring = load_keyring(key)
    assert ring.current_id == second and first in ring.keys
    assert archive.reseal(tmp_path / "a.wasup", ring, "s", tmp_path)
    assert archive.inspect(tmp_path / "a.wasup").key_id == second
    archive.unseal(tmp_path / "a.wasup", tmp_path / "out", ring, "s")
    assert (tmp_path / "out/Default/Local Storage/x").read_bytes() == b"secret"


def test_caches_and_locks_are_left_out(tmp_path: Path, keyfile: Path) -> None:
    """Only essential files are sealed: caches and Chromium's locks are not."""
    src = tmp_path / "p"
    for rel in (
        "Default/Cache/data_0",
        "Default/Code Cache/js/x",
        "Default/IndexedDB/db/000003.log",
        "Default/IndexedDB/db/LOCK",
        "Local State",
        "GPUCache/x",
    ):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"x")
    os.symlink("host-1", src / "SingletonLock")
    archive.seal_dir(src, tmp_path / "a.wasup", load_keyring(keyfile), "s")
    archive.unseal(tmp_path / "a.wasup", tmp_path / "o", load_keyring(keyfile), "s")
    assert sorted(read_tree(tmp_path / "o")) == ["Default/IndexedDB/db/000003.log", "Local State"]
