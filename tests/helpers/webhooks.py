"""A webhook receiver for tests: a real HTTP server in a thread that records what it gets."""

from __future__ import annotations

import http.server
import json
import threading
from collections import defaultdict
from typing import Any

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

    def answer_ok(self) -> None:
        """Drop the statuses still scripted: every later request gets 200 (the receiver fixed)."""
        with self.lock:
            self.statuses.clear()
