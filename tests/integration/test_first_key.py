"""A real daemon started with no profile key: a user's own daemon creates one when nothing sealed
needs another, and refuses (the sessions fail, the daemon stays up) when something does or
when it runs in system mode."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess
from wasupd.profiles import archive
from wasupd.profiles.keys import Keyring, load_keyring

NOBODY = 65534
# Run as `nobody` when we are root (root is system mode); as ourselves otherwise.
USER = NOBODY if os.geteuid() == 0 else None


def key_file(d: DaemonProcess) -> Path:
    return Path(d.config["profiles"]["key_file"])


def log_events(d: DaemonProcess, event: str) -> list[dict[str, Any]]:
    """The daemon's JSON log lines with `event`."""
    lines = (json.loads(line) for line in d.log().splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("event") == event]


def assert_key_missing_and_session_fails(d: DaemonProcess) -> None:
    """No key was created; a session fails with the message naming `wasupd keygen`, and the
    daemon still answers."""
    assert not key_file(d).exists()
    d.call("session.create", name="bob")
    info = d.wait_state("bob", "failed", 30)
    assert f"profile key {key_file(d)} does not exist" in info["reason"]
    assert f"create it with `wasupd keygen {key_file(d)}`" in info["reason"]
    assert d.call("daemon.status")
    assert not log_events(d, "profile_key_created")


@pytest.mark.chromium
@pytest.mark.service_user
def test_a_users_first_start_creates_the_key_and_sessions_work(
    daemon_factory: Any, sim_factory: Any
) -> None:
    """No key, empty state: the key file (in a dir that did not exist) is created 0600, owned by
    the daemon's user, logged at warning level with its path and "keep a copy", and a session
    runs its browser up to a QR and seals its profile under that key."""
    sim = sim_factory()
    d: DaemonProcess = daemon_factory(start=False, key=False, uid=USER, browser={"url": sim.url})
    d.config["profiles"]["key_file"] = str(d.root / "conf" / "wasupd" / "profile.key")
    d.start()
    key = key_file(d)
    st = key.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == (USER or os.geteuid())
    [line] = log_events(d, "profile_key_created")
    assert line["level"] == "warning" and line["path"] == str(key)
    assert "keep a copy" in line["hint"]
    ring = load_keyring(key, admin=True)
    assert line["key_id"] == ring.current_id
    d.call("session.create", name="alice")
    d.wait_state("alice", "qr", 90)
    assert d.stop() == 0
    sealed = archive.inspect(d.state_dir / "profiles" / "alice.wasup")
    assert sealed.key_id == ring.current_id


@pytest.mark.service_user
def test_a_sealed_profile_without_its_key_is_not_given_a_new_one(daemon_factory: Any) -> None:
    """A user's daemon with `profiles/*.wasup` and no key creates none, says why at start, and
    its sessions fail with the existing message."""
    d: DaemonProcess = daemon_factory(start=False, key=False, uid=USER)
    (d.state_dir / "profiles").mkdir()
    live = d.root / "old-profile"
    (live / "Default").mkdir(parents=True)
    (live / "Default" / "Preferences").write_text("{}")
    archive.seal_dir(live, d.state_dir / "profiles" / "old.wasup", Keyring.of(b"k" * 32), "old")
    d.start()
    [line] = log_events(d, "profile_key_missing")
    assert "profiles/old.wasup" in line["not_created"]
    assert_key_missing_and_session_fails(d)


@pytest.mark.service_user
def test_a_backup_without_its_key_is_not_given_a_new_one(daemon_factory: Any) -> None:
    """Anything under `backups/` counts: it may hold archives sealed under the missing key."""
    d: DaemonProcess = daemon_factory(start=False, key=False, uid=USER)
    (d.state_dir / "backups" / "wasupd-20240101T000000Z").mkdir(parents=True)
    d.start()
    assert_key_missing_and_session_fails(d)


@pytest.mark.skipif(os.geteuid() != 0, reason="system mode is root (or the service user)")
def test_system_mode_never_creates_the_key(daemon_factory: Any) -> None:
    """Root with no key and nothing sealed: still no key (`wasupd keygen` is an install step)."""
    d: DaemonProcess = daemon_factory(key=False)
    [line] = log_events(d, "profile_key_missing")
    assert "system mode" in line["not_created"]
    assert_key_missing_and_session_fails(d)
