"""Profiles on a real daemon: wrong key fails loudly, crashes never lose the archive, export/import."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.helpers.waiting import eventually
from wasupd.profiles import archive
from wasupd.profiles.keys import generate_key_file, load_keyring

CTL = [sys.executable, "-m", "wasupctl.app"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_wrong_and_missing_key_fail_and_leave_archive_untouched(
    daemon_factory: Any, sim_factory: Any
) -> None:
    """With another key (or none) the session goes failed with a precise reason; the archive is unchanged."""
    sim = sim_factory()
    d = daemon_factory(browser={"url": sim.url})
    d.call("session.create", name="k1")
    d.wait_state("k1", "qr", 90)
    d.call("session.stop", name="k1")
    arc = d.state_dir / "profiles" / "k1.wasup"
    before = digest(arc)
    key = Path(d.config["profiles"]["key_file"])
    key.rename(key.with_suffix(".old"))
    generate_key_file(key)
    d.call("session.start", name="k1")
    info = eventually(
        lambda: (i := d.call("session.get", name="k1", history=0))["state"] == "failed" and i,
        30,
        "failed",
    )
    assert "not in the key file" in info["reason"]
    key.unlink()
    d.call("session.start", name="k1")
    info = eventually(
        lambda: (
            (i := d.call("session.get", name="k1", history=5))["history"][-1]["to"] == "failed"
            and i["history"][-2]["to"] == "starting"
            and i
        ),
        30,
        "failed again",
    )
    assert "wasupd keygen" in info["reason"]
    assert digest(arc) == before


SEALER = """
import os, sys
from pathlib import Path
from wasupd.profiles import archive
from wasupd.profiles.keys import load_keyring
src, dest, key = map(Path, sys.argv[1:4])
ring = load_keyring(key)
print("ready", flush=True)
while True:
    archive.seal_dir(src, dest, ring, "s")
"""


def test_kill9_during_sealing_never_breaks_the_archive(tmp_path: Path) -> None:
    """kill -9 of a process re-sealing in a loop, at many points: the archive always opens intact."""
    key = tmp_path / "key"
    generate_key_file(key)
    ring = load_keyring(key)
    src = tmp_path / "src"
    (src / "Default/IndexedDB").mkdir(parents=True)
    (src / "Default/IndexedDB/data").write_bytes(os.urandom(3 << 20))
    dest = tmp_path / "a.wasup"
    archive.seal_dir(src, dest, ring, "s")
    rng = random.Random(7)
    for i in range(25):
        p = subprocess.Popen(
            [sys.executable, "-c", SEALER, str(src), str(dest), str(key)], stdout=subprocess.PIPE
        )
        assert p.stdout is not None and p.stdout.readline().startswith(b"ready")
        time.sleep(rng.uniform(0, 0.15))  # a random point inside the seal loop: the fault's timing
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        p.stdout.close()
        out = tmp_path / f"out{i}"
        archive.unseal(dest, out, ring, "s")
        assert (out / "Default/IndexedDB/data").read_bytes() == (
            src / "Default/IndexedDB/data"
        ).read_bytes()
    leftovers = [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]
    assert all(
        f.name.startswith(".") for f in leftovers
    )  # temp files never take the archive's name


def test_export_import_round_trip(daemon_factory: Any, sim_factory: Any, tmp_path: Path) -> None:
    """`session export` then `session import` on a second daemon with its own state dir and the same key."""
    sim = sim_factory()
    a = daemon_factory(browser={"url": sim.url})
    a.call("session.create", name="mover")
    a.wait_state("mover", "qr", 90)
    a.call("session.stop", name="mover")
    out = tmp_path / "mover.wasup"
    r = subprocess.run(
        [*CTL, "--socket", str(a.socket), "session", "export", "mover", "-o", str(out)],
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == (a.state_dir / "profiles" / "mover.wasup").read_bytes()
    b = daemon_factory(start=False, browser={"url": sim.url})
    Path(b.config["profiles"]["key_file"]).write_bytes(
        Path(a.config["profiles"]["key_file"]).read_bytes()
    )
    os.chmod(b.config["profiles"]["key_file"], 0o600)
    b.start()
    r = subprocess.run(
        [*CTL, "--socket", str(b.socket), "session", "import", "moved", "-i", str(out)],
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert b.call("session.get", name="moved", history=0)["state"] == "stopped"
    assert archive.inspect(b.state_dir / "profiles" / "moved.wasup").session == "moved"
    bad = tmp_path / "bad.wasup"
    bad.write_bytes(out.read_bytes()[:-5])
    r = subprocess.run(
        [*CTL, "--socket", str(b.socket), "session", "import", "broken", "-i", str(bad)],
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert r.returncode == 1 and "truncated" in r.stderr
    assert "broken" not in [s["name"] for s in b.call("session.list")]
