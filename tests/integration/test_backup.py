"""Backups while the daemon runs (`wasupctl backup`) and their restore (`wasupd restore`).

Real daemons on real sockets and files. The full round trip (a linked session restored from a
backup links again without a QR) is in tests/e2e/test_backup_restore.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess
from tests.helpers.service_env import ServiceEnv
from wasupd.profiles import archive
from wasupd.profiles.keys import load_keyring

CTL = [sys.executable, "-m", "wasupctl.app"]
WASUPD = [sys.executable, "-m", "wasupd.daemon"]


def ctl(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`wasupctl --socket ... ARGS`, bounded."""
    return subprocess.run(
        [*CTL, "--socket", str(d.socket), *args], capture_output=True, text=True, timeout=120
    )


def restore(d: DaemonProcess, backup: Path) -> subprocess.CompletedProcess[str]:
    """`wasupd --config ... restore BACKUP`, bounded."""
    return subprocess.run(
        [*WASUPD, "--config", str(d.config_path), "restore", str(backup)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def with_archives(daemon_factory: Any, tmp_path: Path, names: tuple[str, ...]) -> DaemonProcess:
    """A daemon with stopped sessions `names`, each with a sealed archive under its key."""
    d: DaemonProcess = daemon_factory()
    keyring = load_keyring(Path(d.config["profiles"]["key_file"]))
    for name in names:
        d.call("session.create", name=name, start=False)
        src = tmp_path / f"src-{name}"
        (src / "Default" / "Local Storage").mkdir(parents=True)
        (src / "Default" / "Local Storage" / "leveldb.log").write_text(f"link of {name}")
        archive.seal_dir(
            src,
            d.state_dir / "profiles" / f"{name}.wasup",
            keyring,
            name,
            files=[Path("Default/Local Storage/leveldb.log")],
        )
    return d


def test_backup_is_complete_consistent_and_pruned(daemon_factory: Any, tmp_path: Path) -> None:
    """A backup holds an openable database and authenticated archives, names its contents in
    the manifest, cleans up a cut-off one, and `--keep` removes the oldest."""
    d = with_archives(daemon_factory, tmp_path, ("alice", "bob"))
    d.call("message.send", to="15550001111", text="queued before the backup", session="alice")
    root = d.state_dir / "backups"
    (root / ".partial-wasupd-20200101T000000Z").mkdir(parents=True)  # a crash mid-backup
    made = []
    for _ in range(3):
        out = ctl(d, "backup", "--keep", "2")
        assert out.returncode == 0, out.stderr
        made.append(Path(out.stdout.strip()))
        assert "2 sessions, 3 files" in out.stderr
    assert sorted(p.name for p in root.iterdir()) == sorted(p.name for p in made[1:])
    assert f"removed: {made[0].name}" in out.stderr
    backup = made[-1]
    manifest = json.loads((backup / "MANIFEST.json").read_text())
    assert manifest["sessions"] == ["alice", "bob"]
    keyring = load_keyring(Path(d.config["profiles"]["key_file"]))
    assert manifest["key_ids"] == [keyring.current_id]
    assert set(manifest["files"]) == {"wasupd.db", "profiles/alice.wasup", "profiles/bob.wasup"}
    for rel, size in manifest["files"].items():
        assert (backup / rel).stat().st_size == size
    live = d.state_dir / "profiles" / "alice.wasup"
    assert (backup / "profiles/alice.wasup").read_bytes() == live.read_bytes()
    assert not list(backup.glob("*-wal")), "the database copy must stand alone"
    con = sqlite3.connect(f"file:{backup / 'wasupd.db'}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT count(*) FROM sessions").fetchone()[0] == 2
        bodies = [r[0] for r in con.execute("SELECT body FROM outbox")]
    finally:
        con.close()
    assert bodies == ["queued before the backup"]
    as_json = json.loads(ctl(d, "--json", "backup").stdout)
    assert as_json["sessions"] == ["alice", "bob"] and as_json["not_checkpointed"] == {}
    assert ctl(d, "backup", "--keep", "-1").returncode == 2  # a usage error, named


def test_restore_replaces_state_and_keeps_the_old(daemon_factory: Any, tmp_path: Path) -> None:
    """Refused while the daemon runs; after a stop the backup's state comes back and what was
    there is moved aside; the daemon starts on it with the same sessions and outbox."""
    d = with_archives(daemon_factory, tmp_path, ("alice",))
    mid = d.call("message.send", to="15550001111", text="keep me", session="alice")["id"]
    backup = Path(ctl(d, "backup").stdout.strip())
    running = restore(d, backup)
    assert running.returncode == 1 and "already running" in running.stderr
    d.call("session.delete", name="alice", force=True)  # the loss the backup undoes
    d.call("session.create", name="newer", start=False)
    assert d.stop() == 0
    done = restore(d, backup)
    assert done.returncode == 0, done.stderr
    aside = next(d.state_dir.glob("replaced-*"))
    assert str(aside) in done.stdout and (aside / "wasupd.db").exists()
    d.start()
    assert [s["name"] for s in d.call("session.list")] == ["alice"]
    assert d.call("message.get", id=mid)["body"] == "keep me"
    keyring = load_keyring(Path(d.config["profiles"]["key_file"]))
    assert archive.verify(d.state_dir / "profiles" / "alice.wasup", keyring).session == "alice"


def test_damaged_or_foreign_backups_are_refused_untouched(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """Not a backup, a truncated archive, a flipped byte, a hostile manifest, a live profile
    left by a crash: each refused with what to do, and the state dir is not changed."""
    d = with_archives(daemon_factory, tmp_path, ("alice",))
    good = Path(ctl(d, "backup").stdout.strip())
    assert d.stop() == 0
    before = sorted(p.name for p in d.state_dir.iterdir())
    db_bytes = (d.state_dir / "wasupd.db").read_bytes()

    def copy(name: str) -> Path:
        dest = tmp_path / name
        subprocess.run(["cp", "-a", str(good), str(dest)], check=True)
        return dest

    cases: list[tuple[Path, str]] = [(tmp_path, "no MANIFEST.json")]
    short = copy("short")
    arc = short / "profiles" / "alice.wasup"
    arc.write_bytes(arc.read_bytes()[:-7])
    cases.append((short, f"profiles/alice.wasup is not {len(arc.read_bytes()) + 7} bytes"))
    flipped = copy("flipped")
    arc = flipped / "profiles" / "alice.wasup"
    data = bytearray(arc.read_bytes())
    data[len(data) // 2] ^= 0x01
    arc.write_bytes(bytes(data))
    cases.append((flipped, "fails authentication"))
    hostile = copy("hostile")
    manifest = json.loads((hostile / "MANIFEST.json").read_text())
    manifest["files"]["../../etc/passwd"] = 1
    (hostile / "MANIFEST.json").write_text(json.dumps(manifest))
    cases.append((hostile, "unexpected file '../../etc/passwd'"))
    for backup, message in cases:
        out = restore(d, backup)
        assert out.returncode == 1 and message in out.stderr, (backup, out.stderr)
        assert "Traceback" not in out.stderr
    live = d.runtime_dir / "profiles" / "alice"
    live.mkdir(parents=True)
    out = restore(d, good)
    assert out.returncode == 1 and "start and stop wasupd once" in out.stderr
    assert sorted(p.name for p in d.state_dir.iterdir()) == before
    assert (d.state_dir / "wasupd.db").read_bytes() == db_bytes
    os.rmdir(live)


def test_a_damaged_archive_is_left_out_and_named(daemon_factory: Any, tmp_path: Path) -> None:
    """One bad archive does not stop the backup of the rest; the CLI names it and exits 1."""
    d = with_archives(daemon_factory, tmp_path, ("alice", "bob"))
    arc = d.state_dir / "profiles" / "bob.wasup"
    data = bytearray(arc.read_bytes())
    data[-3] ^= 0x01
    arc.write_bytes(bytes(data))
    out = ctl(d, "backup")
    assert out.returncode == 1
    assert "error: bob: archive left out of the backup" in out.stderr
    backup = Path(out.stdout.strip())
    manifest = json.loads((backup / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == {"wasupd.db", "profiles/alice.wasup"}
    assert "bob" in manifest["damaged"] and not (backup / "profiles" / "bob.wasup").exists()


def test_restore_refuses_symlinks_and_a_damaged_database(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """A backup whose files are symlinks (a restore run as root must not copy what they point
    at) or whose database fails `quick_check` is refused, and nothing is changed."""
    d = with_archives(daemon_factory, tmp_path, ("alice",))
    good = Path(ctl(d, "backup").stdout.strip())
    assert d.stop() == 0
    db_bytes = (d.state_dir / "wasupd.db").read_bytes()
    linked = tmp_path / "linked"
    subprocess.run(["cp", "-a", str(good), str(linked)], check=True)
    secret = tmp_path / "secret"
    secret.write_bytes((linked / "wasupd.db").read_bytes())
    (linked / "wasupd.db").unlink()
    (linked / "wasupd.db").symlink_to(secret)
    out = restore(d, linked)
    assert out.returncode == 1 and "wasupd.db is not a regular file" in out.stderr, out.stderr
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-a", str(good), str(broken)], check=True)
    db = bytearray((broken / "wasupd.db").read_bytes())
    page = 4096
    db[page : 2 * page] = bytes(range(256)) * (page // 256)  # garbage over the second page
    (broken / "wasupd.db").write_bytes(bytes(db))
    out = restore(d, broken)
    assert out.returncode == 1 and "wasupd.db is damaged" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert (d.state_dir / "wasupd.db").read_bytes() == db_bytes
    assert not list(d.state_dir.glob("replaced-*"))


def test_retiring_old_keys_waits_for_rekey_and_guards_backups(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """`keygen --retire` is refused while an archive is under an old key (rekey first) and while
    a backup needs one (unless --force); then only the current key is left."""
    d = with_archives(daemon_factory, tmp_path, ("alice",))
    backup = Path(ctl(d, "backup").stdout.strip())
    key = Path(d.config["profiles"]["key_file"])

    def keygen(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*WASUPD, "--config", str(d.config_path), "keygen", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert keygen("--add").returncode == 0
    old, new = list(load_keyring(key).keys)[1], load_keyring(key).current_id
    out = keygen("--retire")
    assert (
        out.returncode == 1 and "profiles/alice.wasup still sealed under an old key" in out.stderr
    )
    assert d.call("profiles.rekey")["resealed"] == ["alice"]
    out = keygen("--retire")
    assert out.returncode == 1
    assert f"backups/{backup.name}/profiles/alice.wasup may need an old key" in out.stderr
    assert len(load_keyring(key).keys) == 2
    out = keygen("--retire", "--force")
    assert out.returncode == 0 and old in out.stdout, out.stderr
    assert list(load_keyring(key).keys) == [new]


@pytest.mark.service_user
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as the service user")
def test_restore_as_the_service_user_while_systemd_removed_the_runtime_dir(
    daemon_factory: Any, tmp_path: Path, service_env: ServiceEnv
) -> None:
    """The documented `runuser -u wasupd -- wasupd restore DIR` after `systemctl stop`: the
    runtime dir is gone and the user may not create it; the restore locks the state dir."""
    d = with_archives(daemon_factory, tmp_path, ("alice",))
    backup = Path(ctl(d, "backup").stdout.strip())
    assert d.stop() == 0
    subprocess.run(["rm", "-rf", str(d.runtime_dir)], check=True)
    subprocess.run(["chown", "-R", "65534:65534", str(d.state_dir)], check=True)
    os.chown(d.config["profiles"]["key_file"], 65534, -1)
    d.root.chmod(0o755)
    d.config_path.chmod(0o644)
    d.runtime_dir.parent.chmod(0o755)  # the service user cannot create the runtime dir in it
    as_service_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    wasupd = [*as_service_user, *service_env.wasupd]
    out = subprocess.run(
        [*wasupd, "--config", str(d.config_path), "restore", str(backup)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert (d.state_dir / "wasupd.db").stat().st_uid == 65534
    assert not d.runtime_dir.exists()


def test_a_second_daemon_on_the_same_state_dir_is_refused(daemon_factory: Any) -> None:
    """Two daemons with different sockets must still never share one database."""
    d: DaemonProcess = daemon_factory()
    twin: DaemonProcess = daemon_factory(start=False, daemon={"state_dir": str(d.state_dir)})
    with pytest.raises(AssertionError, match="daemon exited with 1"):
        twin.start()
    assert f"already running with {d.state_dir}" in twin.log()
    assert d.call("daemon.status")["pid"] == d.proc.pid  # type: ignore[union-attr]
