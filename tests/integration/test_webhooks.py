"""Webhooks against a local receiver: signatures, retries on 500, no retry on 400, durability."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.helpers.postgres import StoreTarget
from tests.helpers.waiting import eventually_async
from wasupd.config import WebhooksConfig
from wasupd.messaging.webhooks import Webhooks, sign


class Receiver:
    """A local HTTP receiver that answers with a scripted list of statuses."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def start(self, port: int = 0) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        return self

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def got(rx: Receiver, n: int) -> Callable[[], bool]:
    """A probe: the receiver has had `n` requests."""
    return lambda: len(rx.got) == n


async def test_signed_retried_durable_exactly_once(
    tmp_path: Path, store_target: StoreTarget
) -> None:
    """500 then 200: retried and delivered once, signed; a receiver down across a restart still gets it."""
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    rx = await Receiver([500]).start()
    cfg = WebhooksConfig(url=rx.url, secret_file=str(secret), backoff_initial=0.2, max_attempts=20)
    db = await store_target.open()
    try:
        async with Webhooks(cfg, db) as hooks:
            await hooks.enqueue("message", {"body": "hi"})
            await eventually_async(lambda: hooks.list("delivered", 10), 15, "a delivered row")
        assert len(rx.got) == 2
        headers, body = rx.got[-1]
        assert headers["X-Wasup-Signature"] == sign(b"s3cret", headers["X-Wasup-Timestamp"], body)
        assert (
            rx.got[0][0]["X-Wasup-Delivery"]
            == headers["X-Wasup-Delivery"]
            == json.loads(body)["id"]
        )
        port = rx.port
        await rx.stop()  # the receiver goes down; an event is queued; the "daemon" restarts
        async with Webhooks(cfg, db) as hooks:
            await hooks.enqueue("ack", {"id": "m1"})
            # The first attempt meets the refused connection and stays pending for a retry.
            [tried] = await eventually_async(
                lambda: hooks.list("pending", 10),
                15,
                "a failed first attempt at the down receiver",
                ok=lambda rows: bool(rows) and rows[0]["attempts"] >= 1,
            )
            assert tried["event"] == "ack" and tried["last_status"] is None and tried["last_error"]
        rx2 = await Receiver([]).start(port)
        try:
            async with Webhooks(cfg, db) as hooks:
                await eventually_async(
                    lambda: len(rx2.got) >= 1, 15, "a request at the new receiver"
                )
                await eventually_async(
                    lambda: hooks.list("pending", 10), 15, "no pending rows", ok=lambda r: not r
                )
            # Exactly once by idempotency id: the ack went out once, the message was never resent.
            ids = [h["X-Wasup-Delivery"] for h, _ in rx2.got]
            assert len(ids) == len(set(ids)) == 1 and json.loads(rx2.got[0][1])["event"] == "ack"
        finally:
            await rx2.stop()
    finally:
        await db.close()


async def test_client_error_is_not_retried(store_target: StoreTarget) -> None:
    """A 400 answer is final: one attempt, the delivery is failed with the status."""
    rx = await Receiver([400]).start()
    db = await store_target.open()
    try:
        async with Webhooks(WebhooksConfig(url=rx.url, backoff_initial=0.1), db) as hooks:
            await hooks.enqueue("state", {"to": "connected"})
            # Failed is final: once the row says so, no retry can follow.
            failed = await eventually_async(lambda: hooks.list("failed", 10), 15, "a failed row")
        assert len(rx.got) == 1 and failed[0]["last_status"] == 400 and failed[0]["attempts"] == 1
    finally:
        await db.close()
        await rx.stop()


async def test_failed_deliveries_are_retried_on_request_with_their_ids(
    store_target: StoreTarget,
) -> None:
    """A 400 leaves a delivery failed (the dead-letter queue); `retry` queues it again from its
    first attempt with the same delivery id; ids that are not failed are reported, not touched."""
    rx = await Receiver([400, 400]).start()
    db = await store_target.open()
    try:
        async with Webhooks(WebhooksConfig(url=rx.url, backoff_initial=0.1), db) as hooks:
            assert await hooks.retry(None) == ([], [])
            await hooks.enqueue("state", {"to": "connected"})
            await hooks.enqueue("state", {"to": "qr"})
            await eventually_async(got(rx, 2), 15, "2 requests")

            def rows(state: str, n: int) -> Any:
                return eventually_async(
                    lambda: hooks.list(state, 10), 15, f"{n} {state} rows", ok=lambda r: len(r) == n
                )

            failed = await rows("failed", 2)
            first, second = sorted(r["id"] for r in failed)
            assert await hooks.retry([first, first, "nope"]) == ([first], ["nope"])
            await eventually_async(got(rx, 3), 15, "3 requests")
            failed = await rows("delivered", 1)
            assert failed[0]["id"] == first and failed[0]["attempts"] == 1
            assert rx.got[2][0]["X-Wasup-Delivery"] == first
            assert await hooks.retry([first]) == ([], [first])  # delivered: not failed any more
            assert await hooks.retry(None) == ([second], [])
            await eventually_async(got(rx, 4), 15, "4 requests")
    finally:
        await db.close()
        await rx.stop()


async def test_two_hosts_on_one_database_deliver_each_webhook_once(
    tmp_path: Path, postgres_db: str
) -> None:
    """Two daemons' delivery workers on one PostgreSQL queue (a fleet): each of 30
    deliveries, queued by either, reaches the receiver exactly once."""
    from wasupd.store.db import open_database

    rx = await Receiver([]).start()
    cfg = WebhooksConfig(url=rx.url)
    one = await open_database(tmp_path / "unused.db", postgres_db)
    two = await open_database(tmp_path / "unused.db", postgres_db)
    try:
        async with Webhooks(cfg, one) as a, Webhooks(cfg, two) as b:
            for i in range(30):
                await (a if i % 2 else b).enqueue("message", {"n": i})
            await eventually_async(
                lambda: a.list("delivered", 100), 30, "30 delivered", ok=lambda r: len(r) == 30
            )
        ids = [h["X-Wasup-Delivery"] for h, _ in rx.got]
        assert len(ids) == 30 and len(set(ids)) == 30
    finally:
        await one.close()
        await two.close()
        await rx.stop()
