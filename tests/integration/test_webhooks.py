"""Webhooks against a local receiver: signatures, retries on 500, no retry on 400, durability."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from wasupd.config import WebhooksConfig
from wasupd.messaging.webhooks import Webhooks, sign
from wasupd.store.db import Database


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


async def wait_for(cond: Any, timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.05)


async def test_signed_retried_durable_exactly_once(tmp_path: Path) -> None:
    """500 then 200: retried and delivered once, signed; a receiver down across a restart still gets it."""
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    rx = await Receiver([500]).start()
    cfg = WebhooksConfig(url=rx.url, secret_file=str(secret), backoff_initial=0.2, max_attempts=20)
    db = await Database.open(tmp_path / "w.db")
    try:
        async with Webhooks(cfg, db) as hooks:
            await hooks.enqueue("message", {"body": "hi"})
            delivered: list[Any] = []

            async def poll() -> None:
                delivered[:] = await hooks.list("delivered", 10)

            async with asyncio.timeout(15):
                while not delivered:
                    await poll()
                    await asyncio.sleep(0.05)
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
            await asyncio.sleep(0.5)
        rx2 = await Receiver([]).start(port)
        try:
            async with Webhooks(cfg, db) as hooks:
                await wait_for(lambda: len(rx2.got) >= 1)
                async with asyncio.timeout(15):
                    while await hooks.list("pending", 10):
                        await asyncio.sleep(0.05)
            # Exactly once by idempotency id: the ack went out once, the message was never resent.
            ids = [h["X-Wasup-Delivery"] for h, _ in rx2.got]
            assert len(ids) == len(set(ids)) == 1 and json.loads(rx2.got[0][1])["event"] == "ack"
        finally:
            await rx2.stop()
    finally:
        await db.close()


async def test_client_error_is_not_retried(tmp_path: Path) -> None:
    """A 400 answer is final: one attempt, the delivery is failed with the status."""
    rx = await Receiver([400]).start()
    db = await Database.open(tmp_path / "w.db")
    try:
        async with Webhooks(WebhooksConfig(url=rx.url, backoff_initial=0.1), db) as hooks:
            await hooks.enqueue("state", {"to": "connected"})
            await wait_for(lambda: len(rx.got) == 1)
            await asyncio.sleep(0.5)
            failed = await hooks.list("failed", 10)
        assert len(rx.got) == 1 and failed[0]["last_status"] == 400
    finally:
        await db.close()
        await rx.stop()


async def test_failed_deliveries_are_retried_on_request_with_their_ids(tmp_path: Path) -> None:
    """A 400 leaves a delivery failed (the dead-letter queue); `retry` queues it again from its
    first attempt with the same delivery id; ids that are not failed are reported, not touched."""
    rx = await Receiver([400, 400]).start()
    db = await Database.open(tmp_path / "w.db")
    try:
        async with Webhooks(WebhooksConfig(url=rx.url, backoff_initial=0.1), db) as hooks:
            assert await hooks.retry(None) == ([], [])
            await hooks.enqueue("state", {"to": "connected"})
            await hooks.enqueue("state", {"to": "qr"})
            await wait_for(lambda: len(rx.got) == 2)
            failed: list[dict[str, Any]] = []

            async def poll(state: str, n: int) -> bool:
                failed[:] = await hooks.list(state, 10)
                return len(failed) == n

            async with asyncio.timeout(15):
                while not await poll("failed", 2):
                    await asyncio.sleep(0.05)
            first, second = sorted(r["id"] for r in failed)
            assert await hooks.retry([first, first, "nope"]) == ([first], ["nope"])
            await wait_for(lambda: len(rx.got) == 3)
            async with asyncio.timeout(15):
                while not await poll("delivered", 1):
                    await asyncio.sleep(0.05)
            assert failed[0]["id"] == first and failed[0]["attempts"] == 1
            assert rx.got[2][0]["X-Wasup-Delivery"] == first
            assert await hooks.retry([first]) == ([], [first])  # delivered: not failed any more
            assert await hooks.retry(None) == ([second], [])
            await wait_for(lambda: len(rx.got) == 4)
    finally:
        await db.close()
        await rx.stop()
