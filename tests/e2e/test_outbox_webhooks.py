"""Webhooks from a real daemon to a local receiver: signed, retried after 500s, and complete
(each event once by idempotency id) although the receiver is down across a daemon kill -9."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.test_whatsapp import ALICE, BOB, ctl, link_by_qr
from tests.helpers.waiting import eventually
from tests.helpers.webhooks import SECRET, Receiver


def test_webhooks_signed_retried_and_complete_across_restart(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """500, 500, then 200: retried with the same id; receiver down while the daemon is killed
    and restarted: afterwards every event arrives, once per idempotency id, all signed."""
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    rx = Receiver([500, 500])
    sim = sim_factory(accounts=[ALICE, BOB])
    hooks = {
        "url": rx.url,
        "secret_file": str(secret),
        "backoff_initial": 0.2,
        "backoff_max": 1.0,
        "max_attempts": 100,
        "timeout": 5.0,
    }
    d = daemon_factory(browser={"url": sim.url}, webhooks=hooks, restart={"backoff_initial": 0.2})
    rx2: Receiver | None = None
    try:
        link_by_qr(d, sim, "alice", ALICE, tmp_path)
        assert (
            ctl(d, "send", BOB, "hello", "--from", "alice", "--wait", "delivered").returncode == 0
        )
        sim.call("inject", to=ALICE, **{"from": BOB}, text="reply 0")
        eventually(lambda: _settled(d), 30, "first deliveries")
        first = rx.by_id()
        assert any(len(reqs) >= 2 for reqs in first.values()), "a 500 was retried with its id"

        rx.stop()  # the receiver goes down; events keep coming; the daemon is killed
        for i in (1, 2, 3):
            sim.call("inject", to=ALICE, **{"from": BOB}, text=f"reply {i}")
        eventually(lambda: len(d.call("inbox.list", session="alice")) == 4, 30, "inbox")
        eventually(
            lambda: len(d.call("webhooks.list", state="pending", limit=100)) >= 3,
            30,
            "deliveries queued while the receiver is down",
        )
        d.kill9()
        d.start()
        rx2 = Receiver([], port=rx.port)
        eventually(lambda: _settled(d), 60, "deliveries after the restart")
    finally:
        for r in (rx, rx2):
            if r is not None and r.thread.is_alive():
                r.stop()

    assert rx2 is not None
    got = {**rx.by_id(), **rx2.by_id()}  # one entry per idempotency id, whichever receiver
    assert all(ok for r in (rx, rx2) for _, _, ok in r.got), "every request is signed"
    delivered = {w["id"] for w in d.call("webhooks.list", state="delivered", limit=1000)}
    assert set(got) == delivered
    assert d.call("webhooks.list", state="failed", limit=10) == []
    bodies = [reqs[0]["data"]["body"] for reqs in got.values() if reqs[0]["event"] == "message"]
    assert sorted(bodies) == ["reply 0", "reply 1", "reply 2", "reply 3"]
    acks = {reqs[0]["data"]["state"] for reqs in got.values() if reqs[0]["event"] == "ack"}
    states = [reqs[0]["data"]["to"] for reqs in got.values() if reqs[0]["event"] == "state"]
    assert "delivered" in acks and "connected" in states


def _settled(d: Any) -> bool:
    """Nothing left to deliver (and something was delivered)."""
    pending = d.call("webhooks.list", state="pending", limit=10)
    return not pending and bool(d.call("webhooks.list", state="delivered", limit=1))
