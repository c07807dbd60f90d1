"""The sealed archive format: round trips, every kind of damage detected precisely, hostile contents."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import tracemalloc
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasupd.errors import KeyUnavailable, ProfileError
from wasupd.profiles import archive, stream
from wasupd.profiles.keys import Keyring
from wasupd.profiles.selection import is_skipped
from wasupd.profiles.stream import ChunkWriter, make_header, read_header

RING = Keyring.of(b"k" * 32)
OTHER = Keyring.of(b"o" * 32)
SMALL = 4096  # the smallest chunk size: many chunks from little data, so damage tests stay fast

names = st.text(alphabet=st.sampled_from("abcxyz0189_-.é漢 "), min_size=1, max_size=10).filter(
    lambda s: s not in (".", "..") and not is_skipped(s)
)
trees = st.dictionaries(
    st.lists(names, min_size=1, max_size=3).map(tuple), st.binary(max_size=9000), max_size=8
)


def write_tree(root: Path, files: dict[tuple[str, ...], bytes]) -> dict[str, bytes]:
    """Write files under Default/IndexedDB (an essential dir); the ones written, by relative path."""
    out: dict[str, bytes] = {}
    for parts, data in files.items():
        rel = Path("Default/IndexedDB", *parts)
        path = root / rel
        if any(q.is_file() for q in path.parents) or path.is_dir():
            continue  # a prefix of another path: cannot be both a file and a directory
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out[str(rel)] = data
    return out


def read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def round_trip(tmp: Path, files: dict[tuple[str, ...], bytes], **seal: int) -> dict[str, bytes]:
    """Seal `files` (written under `tmp`/src) into `tmp`/a.wasup with `seal` options, unseal into
    `tmp`/out and assert the same bytes came back; the files, by relative path."""
    expected = write_tree(tmp / "src", files)
    (tmp / "src").mkdir(exist_ok=True)
    archive.seal_dir(tmp / "src", tmp / "a.wasup", RING, "s", **seal)
    archive.unseal(tmp / "a.wasup", tmp / "out", RING, "s")
    assert read_tree(tmp / "out") == expected
    return expected


@settings(max_examples=60, deadline=None)
@given(files=trees, chunk=st.sampled_from([SMALL, 1 << 20]), level=st.sampled_from([0, 1, 6]))
def test_round_trip_of_arbitrary_trees(
    files: dict[tuple[str, ...], bytes], chunk: int, level: int
) -> None:
    """Any file tree seals and unseals to exactly the same bytes and mtimes, whatever chunk size and level."""
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        expected = round_trip(tmp, files, chunk_size=chunk, level=level)
        for rel in expected:
            assert (tmp / "out" / rel).stat().st_mtime_ns == (tmp / "src" / rel).stat().st_mtime_ns
        assert (tmp / "out").stat().st_mode & 0o777 == 0o700


@settings(max_examples=60, deadline=None)
@given(
    files=trees,
    level=st.sampled_from([0, 1]),
    decide=st.sampled_from([1, 700, 2048]),
    block=st.sampled_from([1, 333, 1000]),
    where=st.floats(0, 1, exclude_max=True),
)
def test_streamed_chunks_round_trip_and_detect_a_flip(
    files: dict[tuple[str, ...], bytes], level: int, decide: int, block: int, where: float
) -> None:
    """With the codec decided early and blocks smaller than a chunk, stored chunks are streamed
    in many pieces and end mid-chunk at close (then an empty final chunk follows): the tree
    still comes back byte for byte, and a flipped byte anywhere is still caught."""
    with tempfile.TemporaryDirectory() as t, pytest.MonkeyPatch.context() as mp:
        mp.setattr(stream, "DECIDE", decide)
        mp.setattr(stream, "BLOCK", block)
        tmp = Path(t)
        round_trip(tmp, files, chunk_size=SMALL, level=level)
        data = bytearray((tmp / "a.wasup").read_bytes())
        data[int(where * len(data))] ^= 0x01
        (tmp / "flip").mkdir()
        with pytest.raises(ProfileError):
            unseal_bytes(tmp / "flip", bytes(data))


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive of ~12 small chunks: text (compressed) and random bytes (stored)."""
    tmp = tmp_path_factory.mktemp("sealed")
    src = tmp / "src"
    (src / "Default/IndexedDB/db").mkdir(parents=True)
    (src / "Default/IndexedDB/db/000005.ldb").write_bytes(os.urandom(30000))
    (src / "Default/IndexedDB/db/000003.log").write_bytes(b"creds:secret-token;" * 1000)
    (src / "Local State").write_text("{}")
    archive.seal_dir(src, tmp / "a.wasup", RING, "s", chunk_size=SMALL)
    return tmp / "a.wasup"


def spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every chunk record after the header."""
    out, pos = [], len(read_header(io.BytesIO(data), "x").raw)
    while pos < len(data):
        size = struct.unpack(">I", data[pos : pos + 4])[0] & 0x7FFFFFFF
        out.append((pos, pos + 4 + size))
        pos += 4 + size
    return out


def unseal_bytes(tmp: Path, blob: bytes, ring: Keyring = RING, session: str = "s") -> None:
    """Unseal `blob`; asserts nothing was created whatever happens, and the file is unchanged."""
    path = tmp / "x.wasup"
    path.write_bytes(blob)
    try:
        archive.unseal(path, tmp / "out", ring, session)
    finally:
        assert path.read_bytes() == blob
        assert not (tmp / "out").exists()
        assert sorted(p.name for p in tmp.iterdir()) == ["x.wasup"], "temp files left behind"


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_any_single_bit_flip_is_detected(
    tmp_path_factory: pytest.TempPathFactory, sealed: Path, where: float, bit: int
) -> None:
    """Flipping any bit anywhere in the file makes unseal fail with ProfileError, leaving nothing."""
    data = bytearray(sealed.read_bytes())
    data[int(where * len(data))] ^= 1 << bit
    with pytest.raises(ProfileError):
        unseal_bytes(tmp_path_factory.mktemp("flip"), bytes(data))


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(where=st.floats(0, 1, exclude_max=True))
def test_truncation_at_any_offset_is_detected(
    tmp_path_factory: pytest.TempPathFactory, sealed: Path, where: float
) -> None:
    """Cutting the file at any length short of complete fails with a message about the cut."""
    data = sealed.read_bytes()
    with pytest.raises(ProfileError, match=r"truncated|empty"):
        unseal_bytes(tmp_path_factory.mktemp("cut"), data[: int(where * len(data))])


def test_each_kind_of_damage_has_its_own_message(tmp_path: Path, sealed: Path) -> None:
    """Flip, cut, swap, splice, final flag, trailing bytes, header, key, session: each a precise error."""
    data = sealed.read_bytes()
    s = spans(data)
    assert len(s) >= 6
    other = tmp_path / "other.wasup"
    archive.seal_dir(sealed.parent / "src", other, RING, "s", chunk_size=SMALL)
    o = other.read_bytes()
    flip2 = bytearray(data)
    flip2[s[2][0] + 20] ^= 0x10
    final_flag = bytearray(data)
    final_flag[s[1][0]] ^= 0x80
    cases: dict[str, tuple[bytes, str]] = {
        "flip": (bytes(flip2), "chunk 2 fails authentication"),
        "cut": (data[: s[4][0]], "archive truncated after chunk 3 (its final chunk is missing)"),
        "cut inside": (data[: s[4][0] + 9], "archive truncated inside chunk 4"),
        "header only": (data[: s[0][0]], "truncated after its header"),
        "swap": (
            data[: s[1][0]] + data[s[2][0] : s[2][1]] + data[s[1][0] : s[1][1]] + data[s[2][1] :],
            "chunk 1 fails authentication",
        ),
        "splice": (
            data[: s[1][0]] + o[spans(o)[1][0] : spans(o)[1][1]] + data[s[1][1] :],
            "chunk 1 fails authentication",
        ),
        "final flag": (bytes(final_flag), "chunk 1 fails authentication"),
        "trailing": (data + b"\0", "unexpected data after the final chunk"),
        "header": (data[:12] + bytes([data[12] ^ 1]) + data[13:], "header is damaged"),
        "magic": (b"NOTANARC" + data[8:], "not a wasupd profile archive"),
        "empty": (b"", "is empty"),
    }
    for n, (label, (blob, message)) in enumerate(cases.items()):
        (tmp_path / str(n)).mkdir()
        with pytest.raises(ProfileError) as err:
            unseal_bytes(tmp_path / str(n), blob)
        assert message in err.value.message, (label, err.value.message)
    (tmp_path / "keys").mkdir()
    with pytest.raises(
        KeyUnavailable, match=r"sealed under key id \w+, which is not in the key file"
    ):
        unseal_bytes(tmp_path / "keys", data, ring=OTHER)
    (tmp_path / "name").mkdir()
    with pytest.raises(ProfileError, match="sealed for session 's', not 'b'"):
        unseal_bytes(tmp_path / "name", data, session="b")


def hostile(tmp: Path, records: bytes) -> Path:
    """An authentic archive (right key) whose plaintext is `records`, to test the extractor."""
    path = tmp / "h.wasup"
    with open(path, "wb") as fh:
        w = ChunkWriter(fh, make_header(RING.current_id, "s", SMALL), RING.current)
        w.write(records)
        w.close()
    return path


def rec(name: bytes, data: bytes = b"x") -> bytes:
    return b"F" + struct.pack(">H", len(name)) + name + struct.pack(">QQ", 0, len(data)) + data


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (rec(b"../evil") + b"E", "unsafe path"),
        (rec(b"/etc/evil") + b"E", "unsafe path"),
        (rec(b"a/../../evil") + b"E", "unsafe path"),
        (rec(b"a//b") + b"E", "unsafe path"),
        (rec(b"a\0b") + b"E", "unsafe path"),
        (rec(b"") + b"E", "unsafe path"),
        (rec(b"a") + rec(b"a") + b"E", "appears twice"),
        (rec(b"a") + rec(b"a/b") + b"E", "both a file and a directory"),
        (rec(b"a/b") + rec(b"a") + b"E", "appears twice"),
        (b"L" + rec(b"a")[1:] + b"E", "unknown record type"),
        (rec(b"a") + b"E" + b"more", "data after the end record"),
        (rec(b"a"), "contents end inside a record"),
        (rec(b"a")[:-1], "contents end inside 'a'"),
    ],
)
def test_hostile_contents_are_refused(tmp_path: Path, records: bytes, message: str) -> None:
    """Traversal, absolute paths, duplicates, conflicts and malformed records fail; nothing lands outside."""
    path = hostile(tmp_path, records)
    (tmp_path / "d").mkdir()
    with pytest.raises(ProfileError, match=message):
        archive.unseal(path, tmp_path / "d" / "out", RING, "s")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "d" / "out").exists()
    assert list((tmp_path / "d").iterdir()) == []


def test_only_essential_files_are_sealed(tmp_path: Path) -> None:
    """Storage is sealed; caches, locks, logs, temp files and symlinks (even to secrets) are not."""
    src = tmp_path / "p"
    kept = [
        "Local State",
        "Default/Preferences",
        "Default/IndexedDB/db/000003.log",
        "Default/IndexedDB/db/MANIFEST-000001",
        "Default/Local Storage/leveldb/CURRENT",
        "Default/Service Worker/Database/000003.log",
        "Default/Service Worker/ScriptCache/2cc80dabc69f58b6_0",
        "Default/WebStorage/QuotaManager",
        "Default/Cookies",
    ]
    dropped = [
        "Default/Cache/Cache_Data/f_000001",
        "Default/Code Cache/js/index",
        "Default/GPUCache/data_0",
        "Default/Service Worker/CacheStorage/x/index",
        "Default/IndexedDB/db/LOCK",
        "Default/IndexedDB/db/LOG",
        "Default/IndexedDB/db/LOG.old",
        "Default/IndexedDB/db/000004.tmp",
        "Default/History",
        "GrShaderCache/data_1",
        "Crashpad/settings.dat",
    ]
    for rel in kept + dropped:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"x")
    (tmp_path / "secret").write_text("host secret")
    os.symlink(tmp_path / "secret", src / "Default/IndexedDB/db/000009.ldb")
    os.symlink("host-1", src / "SingletonLock")
    archive.seal_dir(src, tmp_path / "a.wasup", RING, "s")
    archive.unseal(tmp_path / "a.wasup", tmp_path / "o", RING, "s")
    assert sorted(read_tree(tmp_path / "o")) == sorted(kept)


def test_compressible_data_shrinks_and_random_data_costs_little(tmp_path: Path) -> None:
    """Text is compressed; already-compressed bytes are stored with under 0.1% overhead."""
    for kind, data in (
        ("text", b'{"id":"3EB0","body":"hello"}' * 40000),
        ("random", os.urandom(1 << 21)),
    ):
        src = tmp_path / kind
        (src / "Default/IndexedDB").mkdir(parents=True)
        (src / "Default/IndexedDB/data").write_bytes(data)
        size = archive.seal_dir(src, tmp_path / f"{kind}.wasup", RING, "s")
        if kind == "text":
            assert size < len(data) / 10
        else:
            assert len(data) < size < len(data) * 1.001


def test_chunks_whose_samples_mislead_stop_costing_zlib_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random bytes with text exactly where the codec is sampled: each attempt to compress a
    whole chunk gains nothing, so later chunks skip it (1, 2, 4... chunks); the data survives."""
    text = b'{"id":"3EB0","body":"hello"} ' * 200  # 6 KiB, around each sample point
    chunk = bytearray(os.urandom(1 << 20))
    for point in (stream.DECIDE // 3, 2 * stream.DECIDE // 3):
        chunk[point - 2048 : point - 2048 + len(text)] = text
    data = bytes(chunk) * 32
    src = tmp_path / "src"
    (src / "Default/IndexedDB").mkdir(parents=True)
    (src / "Default/IndexedDB/data").write_bytes(data)
    whole_chunk_attempts = 0
    real = zlib.compress

    def counting(payload: bytes | memoryview, level: int = -1) -> bytes:
        nonlocal whole_chunk_attempts
        whole_chunk_attempts += len(payload) > stream.DECIDE
        return real(payload, level)

    monkeypatch.setattr(stream.zlib, "compress", counting)
    size = archive.seal_dir(src, tmp_path / "a.wasup", RING, "s")
    assert 1 <= whole_chunk_attempts <= 6, whole_chunk_attempts  # not 32
    assert size < len(data) * 1.01
    archive.unseal(tmp_path / "a.wasup", tmp_path / "out", RING, "s")
    assert (tmp_path / "out/Default/IndexedDB/data").read_bytes() == data


def test_memory_stays_flat_for_a_large_profile(tmp_path: Path) -> None:
    """Sealing and unsealing 48 MiB allocates at most a few chunks' worth of memory."""
    src = tmp_path / "src"
    (src / "Default/IndexedDB").mkdir(parents=True)
    with open(src / "Default/IndexedDB/big", "wb") as fh:
        for _ in range(48):
            fh.write(os.urandom(1 << 20))
    tracemalloc.start()
    try:
        archive.seal_dir(src, tmp_path / "a.wasup", RING, "s")
        _, seal_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        archive.unseal(tmp_path / "a.wasup", tmp_path / "out", RING, "s")
        _, unseal_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seal_peak < 8 << 20 and unseal_peak < 8 << 20, (seal_peak, unseal_peak)


def test_reseal_changes_key_and_name_without_plaintext_and_keeps_damage_untouched(
    tmp_path: Path, sealed: Path
) -> None:
    """Re-sealing moves an archive to the current key (and a new name); a damaged one is left as is."""
    path = tmp_path / "a.wasup"
    path.write_bytes(sealed.read_bytes())
    rotated = Keyring.of(b"n" * 32, b"k" * 32)
    assert archive.reseal(path, RING) is False  # already current: nothing written
    assert archive.reseal(path, rotated, session="t") is True
    header = archive.inspect(path)
    assert (header.key_id, header.session) == (rotated.current_id, "t")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["a.wasup"]
    archive.unseal(path, tmp_path / "out", Keyring.of(b"n" * 32), "t")  # the old key is not needed
    assert read_tree(tmp_path / "out") == read_tree(sealed.parent / "src")
    bad = tmp_path / "bad.wasup"
    blob = bytearray(sealed.read_bytes())
    blob[-30] ^= 1
    bad.write_bytes(bytes(blob))
    with pytest.raises(ProfileError, match="fails authentication"):
        archive.reseal(bad, rotated)
    assert bad.read_bytes() == bytes(blob)


def test_inspect_reads_the_header_without_a_key(sealed: Path) -> None:
    """inspect() gives format version, key id, session and chunk size with no key at hand."""
    h = archive.inspect(sealed)
    assert (h.version, h.key_id, h.session, h.chunk_size) == (2, RING.current_id, "s", SMALL)
