"""A real daemon killed with SIGKILL in the middle of checkpoints: the archive always opens, holds
the link, and the restarted daemon reconnects the session without a new QR."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.waiting import eventually
from wasupd.errors import InvalidState
from wasupd.profiles import archive
from wasupd.profiles.keys import load_keyring

pytestmark = pytest.mark.chromium

ALICE = "15550001111"
PHASES = ("snapshot", "seal")


def state(d: Any, name: str) -> str:
    return str(d.call("session.get", name=name, history=0)["state"])


def qr_payload(d: Any) -> str | None:
    """The QR on offer, None while the page has not shown one yet."""
    try:
        return str(d.call("session.qr", name="alice")["payload"])
    except InvalidState:
        return None


def in_flight(d: Any, phase: str) -> list[Path]:
    """The checkpoint's temp entries of `phase`: its copy of the profile, or its archive temp file."""
    if phase == "snapshot":
        root, prefix = d.runtime_dir / "profiles", ".alice.checkpoint-"
    else:
        root, prefix = d.state_dir / "profiles", ".alice.wasup.tmp-"
    try:
        return [root / n for n in os.listdir(root) if n.startswith(prefix)]
    except FileNotFoundError:
        return []


def kill_during(d: Any, phase: str, timeout: float = 30) -> bool:
    """SIGKILL the daemon as soon as a checkpoint is in `phase`; True if it was still in it after."""
    # Polled every millisecond: the phase lasts only a moment.
    eventually(lambda: in_flight(d, phase), timeout, f"a checkpoint in {phase}", interval=0.001)
    d.kill9()
    return bool(in_flight(d, phase))


def holds_link(arc: Path, out: Path, key: Path, device: str) -> bool:
    """Unseal `arc` into `out`; True when the linked device's credential is in it."""
    archive.unseal(arc, out, load_keyring(key), "alice")
    return any(device.encode() in f.read_bytes() for f in out.rglob("*") if f.is_file())


def test_kill9_during_checkpoints_keeps_a_usable_archive(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """kill -9 while checkpoints copy or seal, several times: each time the archive opens with the
    credential, and after restart the session reconnects as the same device (no QR)."""
    sim = sim_factory(accounts=[ALICE])
    d = daemon_factory(
        browser={"url": sim.url},
        profiles={"checkpoint_interval": 0.2},
        limits={"check_interval": 0.05},
    )
    d.call("session.create", name="alice")
    sim.call("scan", payload=eventually(lambda: qr_payload(d), 60, "a QR"), phone=ALICE)
    eventually(lambda: state(d, "alice") == "connected", 30, "connected")
    device = sim.call("devices", phone=ALICE)[0]
    key = Path(d.config["profiles"]["key_file"])
    arc = d.state_dir / "profiles" / "alice.wasup"
    caught = 0
    for i in range(6):
        caught += kill_during(d, PHASES[i % 2])
        assert holds_link(arc, tmp_path / f"out{i}", key, device), (
            f"kill {i}: archive lost the link"
        )
        d.start()  # sweeps the orphaned browser, seals the newer live profile, restarts alice
        eventually(lambda: state(d, "alice") == "connected", 45, f"reconnected after kill {i}")
        history = [h["to"] for h in d.call("session.get", name="alice", history=3)["history"]]
        assert "qr" not in history, history
    assert caught >= 2, "the kills should land inside checkpoints"
    assert sim.call("devices", phone=ALICE) == [device]  # the same device the whole time
