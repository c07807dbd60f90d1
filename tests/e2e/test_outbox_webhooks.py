"""Webhooks from a real daemon to a local receiver: signed, retried after 500s, and complete
(each event once by idempotency id) although the receiver is down across a daemon kill -9."""

from __future__ import annotations

import http.server
import json
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.e2e.test_whatsapp import ALICE, BOB, ctl, link_by_qr
from tests.helpers.sim import wait_until
from wasupd.messaging.webhooks import sign

SECRET = b"webhook-secret"


class Receiver:
    """An HTTP receiver in a thread: answers the scripted statuses first, then 200; records
    every request (headers, body) and whether its signature verified."""

    def __init__(self, statuses: list[int], port: int = 0) -> None:
        self.statuses = statuses
        self.got: list[tuple[dict[str, str], bytes, bool]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ts = self.headers["X-Wasup-Timestamp"]
                ok = self.headers["X-Wasup-Signature"] == sign(SECRET, ts, body)
                with outer.lock:
                    outer.got.append((dict(self.headers), body, ok))
                    status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop answering (connections are refused from now on)."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def by_id(self) -> dict[str, list[dict[str, Any]]]:
        """Requests grouped by X-Wasup-Delivery: the receiver's idempotency key."""
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        with self.lock:
            for headers, body, _ in self.got:
                out[headers["X-Wasup-Delivery"]].append(json.loads(body))
        return out


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
        wait_until(lambda: _settled(d), 30, "first deliveries")
        first = rx.by_id()
        assert any(len(reqs) >= 2 for reqs in first.values()), "a 500 was retried with its id"

        rx.stop()  # the receiver goes down; events keep coming; the daemon is killed
        for i in (1, 2, 3):
            sim.call("inject", to=ALICE, **{"from": BOB}, text=f"reply {i}")
        wait_until(lambda: len(d.call("inbox.list", session="alice")) == 4, 30, "inbox")
        wait_until(
            lambda: len(d.call("webhooks.list", state="pending", limit=100)) >= 3,
            30,
            "deliveries queued while the receiver is down",
        )
        d.kill9()
        d.start()
        rx2 = Receiver([], port=rx.port)
        wait_until(lambda: _settled(d), 60, "deliveries after the restart")
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
