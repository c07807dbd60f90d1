"""kill -9 while an archive is being replaced, at every step of the write: the archive always opens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from wasupd.profiles import archive
from wasupd.profiles.keys import Keyring

RING = Keyring.of(b"c" * 32)

# The child seals a new version over the archive and freezes (SIGSTOP-like: it waits forever)
# at the step named on its command line; the parent kills it there with SIGKILL.
CHILD = r"""
import os, sys, threading
from pathlib import Path
from wasupd.profiles import archive, fsutil, stream
from wasupd.profiles.keys import Keyring

src, dest, point = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
calls = {"chunk": 0}

def freeze(label):
    print("frozen", label, flush=True)
    threading.Event().wait()

real_emit, real_fsync, real_replace, real_fsync_dir = (
    stream.ChunkWriter._write_sealed, os.fsync, os.replace, fsutil.fsync_dir)

def emit(self, enc, end, *, final):
    if point == f"chunk{calls['chunk']}" or (point == "final" and final):
        freeze(point)
    calls["chunk"] += 1
    real_emit(self, enc, end, final=final)

def fsync(fd):
    if point == "fsync":
        freeze(point)
    real_fsync(fd)

def replace(a, b):
    if point == "rename":
        freeze(point)
    real_replace(a, b)
    if point == "after-rename":
        freeze(point)

def fsync_dir(path):
    if point == "dir-fsync":
        freeze(point)
    real_fsync_dir(path)

stream.ChunkWriter._write_sealed = emit
os.fsync, os.replace, fsutil.fsync_dir = fsync, replace, fsync_dir
archive.seal_dir(src, dest, Keyring.of(b"c" * 32), "s", chunk_size=4096)
print("finished", flush=True)
"""

POINTS = ["chunk0", "chunk1", "chunk5", "final", "fsync", "rename", "after-rename", "dir-fsync"]


def version(root: Path, n: int) -> bytes:
    """Write profile version `n` (several chunks) under `root`; its marker."""
    marker = f"version-{n}".encode()
    (root / "Default/IndexedDB").mkdir(parents=True, exist_ok=True)
    (root / "Default/IndexedDB/000003.log").write_bytes(marker + os.urandom(40000))
    return marker


@pytest.mark.parametrize("point", POINTS)
def test_kill9_at_each_step_of_a_seal_leaves_a_usable_archive(tmp_path: Path, point: str) -> None:
    """Killed at any step, the archive is the old version or (after the rename) the new one, never broken."""
    src, dest = tmp_path / "src", tmp_path / "state" / "s.wasup"
    old = version(src, 1)
    archive.seal_dir(src, dest, RING, "s", chunk_size=4096)
    new = version(src, 2)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(src), str(dest), point],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # blocks until the child froze (pytest-timeout bounds it)
        assert line.split() == ["frozen", point], line
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    out = tmp_path / "out"
    archive.unseal(dest, out, RING, "s")
    data = (out / "Default/IndexedDB/000003.log").read_bytes()
    expected = new if point in ("after-rename", "dir-fsync") else old
    assert data.startswith(expected), data[:10]
    visible = [p.name for p in dest.parent.iterdir() if not p.name.startswith(".")]
    assert visible == ["s.wasup"], "a temp file must never look like an archive"


def test_a_seal_runs_to_the_end_without_a_freeze_point(tmp_path: Path) -> None:
    """The child harness itself seals normally when no step is frozen (so the test above can fail)."""
    src, dest = tmp_path / "src", tmp_path / "s.wasup"
    new = version(src, 7)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(dest), "none"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "finished", result.stderr
    archive.unseal(dest, tmp_path / "out", RING, "s")
    assert (tmp_path / "out/Default/IndexedDB/000003.log").read_bytes().startswith(new)
