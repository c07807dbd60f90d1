"""A linked session survives the loss of the state dir through `wasupctl backup` and
`wasupd restore`: real Chromium, the simulator, and only the backup in between."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.test_whatsapp import ALICE, BOB, ctl, link_by_qr, start, state
from tests.helpers.waiting import eventually

WASUPD = [sys.executable, "-m", "wasupd.daemon"]


def test_backup_of_a_running_session_restores_its_link_and_outbox(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """Backup while alice is connected, lose the state dir, restore, start: alice connects
    again without a QR on the same linked device, and her outbox is back."""
    sim = sim_factory(accounts=[ALICE, BOB])
    d = start(daemon_factory, sim)
    link_by_qr(d, sim, "alice", ALICE, tmp_path)
    out = ctl(d, "send", BOB, "before the backup", "--from", "alice", "--wait", "sent")
    assert out.returncode == 0, out.stderr
    mid = out.stdout.decode().strip()
    out = ctl(d, "--json", "backup")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["sessions"] == ["alice"] and result["not_checkpointed"] == {}
    assert state(d, "alice") == "connected"  # a backup does not disturb a running session
    devices = sim.call("devices", phone=ALICE)

    assert d.stop() == 0
    shutil.rmtree(d.state_dir / "profiles")
    for f in d.state_dir.glob("wasupd.db*"):
        f.unlink()
    done = subprocess.run(
        [*WASUPD, "--config", str(d.config_path), "restore", result["path"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    d.start()
    eventually(lambda: state(d, "alice") == "connected", 90, "alice connected after restore")
    history = d.call("session.get", name="alice", history=4)["history"]
    assert "qr" not in [h["to"] for h in history], history
    assert sim.call("devices", phone=ALICE) == devices
    assert d.call("message.get", id=mid)["state"] in ("sent", "delivered", "read")
