"""The durable outbox with real Chromium: kill -9 during a burst, idempotency, pool sending."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.e2e.test_whatsapp import link_by_qr, state
from tests.helpers.daemon import DaemonProcess
from tests.helpers.waiting import eventually
from wasupd.errors import DaemonUnreachable, Timeout

ALICE, BOB, CAROL, DAVE = "15550001111", "15550002222", "15550003333", "15550004444"


def send_retrying(d: DaemonProcess, **params: Any) -> dict[str, Any]:
    """What a careful script does: retry with the same idempotency key until the daemon answers."""

    def attempt() -> dict[str, Any]:
        if d.proc is not None and d.proc.poll() is not None:
            d.start()  # it was killed: bring it back, as the unit's Restart= would
        return d.call("message.send", timeout=30, **params)  # type: ignore[no-any-return]

    return eventually(  # type: ignore[no-any-return]
        attempt, 120, "the daemon to come back and answer message.send",
        interval=0.1, ignore=(DaemonUnreachable, Timeout),
    )  # fmt: skip


def test_kill9_during_burst_every_message_exactly_once(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """kill -9 of the daemon at random points while 200 messages are queued and sent, restarted each
    time: the recipient receives every message exactly once; idempotency keys hold across restarts."""
    sim = sim_factory(accounts=[ALICE, BOB])
    d = daemon_factory(browser={"url": sim.url}, restart={"backoff_initial": 0.2})
    link_by_qr(d, sim, "alice", ALICE, tmp_path)
    eventually(
        lambda: (d.state_dir / "profiles" / "alice.wasup").exists(), 15, "checkpoint after linking"
    )
    rng = random.Random(11)
    kill_at = set(rng.sample(range(20, 200), 3))
    ids = []
    for i in range(200):
        if i in kill_at:
            d.kill9()
        ids.append(
            send_retrying(
                d, to=BOB, text=f"burst {i:03d}", session="alice", idempotency_key=f"k{i}"
            )["id"]
        )
    for _ in range(2):  # and twice more while the outbox drains
        time.sleep(rng.uniform(0.05, 0.6))  # a random point in the sending
        d.kill9()
        d.start()
    eventually(lambda: state(d, "alice") == "connected", 60, "alice back after restarts")
    assert len(set(ids)) == 200
    # A repeated key returns the first message, never a second send.
    again = d.call("message.send", to=BOB, text="burst 005", session="alice", idempotency_key="k5")
    assert again["id"] == ids[5]

    def all_sent() -> bool:
        done = [
            m
            for m in d.call("outbox.list", session="alice", limit=1000)
            if m["state"] in ("sent", "delivered", "read")
        ]
        return len(done) == 200

    eventually(all_sent, 120, "all 200 sent")
    counts = Counter(m["body"] for m in sim.call("received", phone=BOB))
    assert set(counts) == {f"burst {i:03d}" for i in range(200)}
    assert [b for b, n in counts.items() if n != 1] == []


def test_pool_spreads_sticks_and_survives_a_logout(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """--from auto spreads 300 messages over 3 sessions; a contact's reply pins it to that session;
    a session logged out mid-run hands its queued messages back to the others."""
    contacts = [f"1555100{i:04d}" for i in range(30)]
    sim = sim_factory(accounts=[ALICE, CAROL, DAVE, *contacts])
    d = daemon_factory(browser={"url": sim.url})
    for name, phone in (("a", ALICE), ("c", CAROL), ("d", DAVE)):
        link_by_qr(d, sim, name, phone, tmp_path)
    sim.call("inject", to=CAROL, **{"from": contacts[0]}, text="hello carol")
    eventually(lambda: d.call("inbox.list", session="c"), 15, "reply stored")
    pinned = d.call("message.send", to=contacts[0], text="pinned", session="auto")
    assert pinned["session"] == "c"

    msgs = []
    for i in range(300):
        msgs.append(
            d.call("message.send", to=contacts[1 + i % 29], text=f"pool {i}", session="auto")
        )
        if i == 150:
            sim.call("logout", phone=DAVE)
    eventually(lambda: state(d, "d") == "logged_out", 30, "d logged out")

    def settled() -> list[dict[str, Any]]:
        # Nothing queued, and nothing being sent by a live session (a send in progress is not
        # yet an outcome); only the logged-out session's cut-off send may stay "sending".
        rows = [m for m in d.call("outbox.list", limit=1000) if m["body"].startswith("pool")]
        busy = [m for m in rows if m["state"] == "sending" and m["session"] != "d"]
        return rows if all(m["state"] != "queued" for m in rows) and not busy else []

    rows = eventually(settled, 90, "pool drained")
    # Only a send cut off by the logout itself stays "sending" (delivery unknown until that number
    # is linked again and the page can be asked): it is never handed to another session to be sent twice.
    in_flight = [m for m in rows if m["state"] not in ("sent", "delivered", "read")]
    assert len(in_flight) <= 2 and all(
        m["session"] == "d" and m["state"] == "sending" for m in in_flight
    ), in_flight
    by_session = Counter(m["session"] for m in rows)
    assert by_session["a"] > 30 and by_session["c"] > 30, by_session
    received = Counter(m["body"] for c in contacts for m in sim.call("received", phone=c))
    assert all(received[f"pool {i}"] <= 1 for i in range(300))
    unsure = {m["body"] for m in in_flight}
    assert all(received[f"pool {i}"] == 1 for i in range(300) if f"pool {i}" not in unsure)
