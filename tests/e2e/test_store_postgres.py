"""The daemon on PostgreSQL (`[store] url`): a real daemon, Chromium and the simulator."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_whatsapp import link_by_qr, state
from tests.helpers.daemon import DaemonProcess
from tests.helpers.waiting import eventually

ALICE, BOB = "15550001111", "15550002222"


def sent(d: DaemonProcess, n: int) -> list[dict[str, Any]]:
    """The outbox once `n` of its messages went out (sent, delivered or read)."""
    return eventually(  # type: ignore[no-any-return]
        lambda: d.call("outbox.list", session="alice", limit=100),
        60,
        f"{n} messages sent",
        ok=lambda rows: sum(m["state"] in ("sent", "delivered", "read") for m in rows) == n,
    )


@pytest.mark.chromium
def test_the_daemon_keeps_its_records_in_postgresql(
    daemon_factory: Any, sim_factory: Any, postgres_db: str, tmp_path: Path
) -> None:
    """With `[store] url` the daemon makes no SQLite file: a session is created and linked, its
    messages are delivered once each, and after a restart the session, its history and the
    outbox come back from PostgreSQL and it sends again."""
    sim = sim_factory(accounts=[ALICE, BOB])
    d = daemon_factory(browser={"url": sim.url}, store={"url": postgres_db})
    link_by_qr(d, sim, "alice", ALICE, tmp_path)
    eventually(
        lambda: (d.state_dir / "profiles" / "alice.wasup").exists(), 15, "checkpoint after linking"
    )
    first = [
        d.call("message.send", to=BOB, text=f"pg {i}", session="alice", idempotency_key=f"k{i}")
        for i in range(5)
    ]
    sent(d, 5)
    assert not (d.state_dir / "wasupd.db").exists()

    assert d.stop() == 0
    d.start()
    eventually(lambda: state(d, "alice") == "connected", 60, "alice connected after the restart")
    history = d.call("session.get", name="alice", history=50)["history"]
    assert any(h["to"] == "connected" for h in history[:-1]), history  # from before the restart
    again = d.call("message.send", to=BOB, text="pg 0", session="alice", idempotency_key="k0")
    assert again["id"] == first[0]["id"]  # the key was remembered across the restart
    d.call("message.send", to=BOB, text="pg after", session="alice")
    rows = sent(d, 6)
    assert {m["id"] for m in first} <= {m["id"] for m in rows}
    counts = Counter(m["body"] for m in sim.call("received", phone=BOB))
    assert counts == Counter({**{f"pg {i}": 1 for i in range(5)}, "pg after": 1})
    assert not (d.state_dir / "wasupd.db").exists()
