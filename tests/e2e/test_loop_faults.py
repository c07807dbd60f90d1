"""A fault in one background loop stays in that loop: the daemon answers and the loop resumes.

The daemon runs with `tests/fakes/loop_faults/sitecustomize.py` on its PYTHONPATH, which makes
the first step of each long-lived loop raise an exception no code expects (state follower,
senders, webhook worker, retention, checkpoints, orphan reaper) and notes every step.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_whatsapp import link_by_qr
from tests.helpers.waiting import eventually

FAULTS = Path(__file__).resolve().parents[1] / "fakes" / "loop_faults"
LOOPS = ("state_follower", "sender", "webhook_worker", "retention", "checkpoints", "reaper")
ALICE, BOB = "15550001111", "15550002222"


def test_each_loop_survives_an_unexpected_exception(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every loop raises once and runs again; RPC answers throughout and a message still goes
    out through the sender that faulted."""
    calls = tmp_path / "calls.log"
    calls.touch()
    monkeypatch.setenv("PYTHONPATH", str(FAULTS))
    monkeypatch.setenv("WASUPD_TEST_FAULT_LOG", str(calls))
    sim = sim_factory(accounts=[ALICE, BOB])
    d = daemon_factory(
        browser={"url": sim.url},
        limits={"check_interval": 0.5},
        profiles={"checkpoint_interval": 1.0},
        webhooks={"url": "http://127.0.0.1:9/unused"},
    )
    link_by_qr(d, sim, "alice", ALICE, tmp_path)

    def all_ran_again() -> Counter[str] | None:
        seen = Counter(calls.read_text().split())
        return seen if all(seen[loop] >= 2 for loop in LOOPS) else None

    seen = eventually(all_ran_again, 60, "every loop to run again after its fault")
    assert set(seen) == set(LOOPS)
    assert d.call("daemon.status")["pid"] == d.proc.pid  # type: ignore[union-attr]
    log = d.log()
    for loop in ("state_follower", "sender:alice", "webhook_worker", "retention", "reaper"):
        assert f'"loop": "{loop}"' in log and '"loop_fault"' in log, loop
    assert '"checkpoint_failed"' in log and "injected fault in checkpoints" in log
    msg = d.call("message.send", to=BOB, text="after the faults", session="alice")
    eventually(
        lambda: d.call("message.get", id=msg["id"])["state"] in ("sent", "delivered", "read"),
        30,
        "the message sent by the sender that faulted",
    )
