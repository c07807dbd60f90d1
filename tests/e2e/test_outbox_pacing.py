"""Pacing for real at a small scale, and what `wasupctl send --wait` / `outbox` tell a script."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

from tests.e2e.test_whatsapp import ALICE, BOB, ctl, link_by_qr
from tests.helpers.waiting import eventually

NOBODY = "15559998888"  # not an account of the simulator


def test_real_pacing_jitter_minute_limit_and_cli(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """`--wait` fails at once for a number not on WhatsApp; then pauses of 0.4-0.6 s between
    sends, the 5th message held by a 4/minute limit (shown with its reason in `wasupctl
    outbox`), a `--wait` behind it times out (exit 6), and queued messages can be cancelled."""
    sim = sim_factory(accounts=[ALICE, BOB])
    send = {"pacing": True, "per_minute": 4, "jitter_min": 0.4, "jitter_max": 0.6}
    d = daemon_factory(browser={"url": sim.url}, send=send)
    link_by_qr(d, sim, "alice", ALICE, tmp_path)
    out = ctl(d, "send", NOBODY, "hello?", "--from", "alice", "--wait", "sent")
    assert out.returncode == 1 and b"is not on WhatsApp" in out.stderr, out.stderr

    ids = [
        d.call("message.send", to=BOB, text=f"paced {i}", session="alice")["id"] for i in range(5)
    ]
    eventually(
        lambda: d.call("message.get", id=ids[4])["wait_reason"] == "4 per minute reached",
        30,
        "the 5th message held by the minute limit",
    )
    rows = [d.call("message.get", id=i) for i in ids]
    assert all(r["sent_at"] for r in rows[:4]) and rows[4]["state"] == "queued"
    gaps = [b["sent_at"] - a["sent_at"] for a, b in itertools.pairwise(rows[:4])]
    # At least the drawn pause between sends; the upper bound leaves slack for a busy host.
    assert all(0.4 <= g < 3.0 for g in gaps), gaps
    assert rows[4]["not_before"] > rows[0]["sent_at"] + 59
    out = ctl(d, "--json", "outbox", "alice")
    shown = {m["id"]: m for m in json.loads(out.stdout)}[ids[4]]
    assert shown["wait_reason"] == "4 per minute reached" and shown["not_before"] > time.time()

    # A script waiting on a message stuck behind the limit gets a timeout exit, not a hang.
    out = ctl(d, "send", BOB, "stuck", "--from", "alice", "--wait", "sent", "--wait-timeout", "1")
    assert out.returncode == 6, out.stderr
    stuck = out.stdout.split()[0].decode()
    for mid in (ids[4], stuck):
        assert ctl(d, "message", mid, "--cancel").returncode == 0
        assert d.call("message.get", id=mid)["state"] == "cancelled"
    out = ctl(d, "message", ids[0], "--cancel")
    assert out.returncode != 0 and b"only a queued message can be cancelled" in out.stderr
    bodies = [m["body"] for m in sim.call("received", phone=BOB)]
    assert bodies == [f"paced {i}" for i in range(4)]
