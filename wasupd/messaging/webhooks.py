"""Signed webhooks with a durable delivery queue.

Each event becomes a row in `webhook_deliveries` (its id is the idempotency id, sent as
`X-Wasup-Delivery`), so a daemon restart loses nothing. Bodies are signed with HMAC-SHA256 over
`<timestamp>.<body>` (`X-Wasup-Signature: sha256=<hex>`, `X-Wasup-Timestamp`). Retries back off
exponentially with jitter up to a cap; a 4xx other than 408/429 is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import secrets
import time
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from wasupd.config import WebhooksConfig
from wasupd.errors import ConfigError
from wasupd.store.db import Database

log = structlog.get_logger("wasupd.webhooks")


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp`."""
    return (
        "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )


def read_secret(path: str) -> bytes:
    """The webhook secret (whitespace stripped); ConfigError when unreadable."""
    if not path:
        return b""
    try:
        return Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            f"webhooks.secret_file {path}: {exc.strerror}", key="webhooks.secret_file"
        ) from exc


def retryable(status: int) -> bool:
    """5xx, 408 and 429 are retried; other 4xx are final."""
    return status >= 500 or status in (408, 429)


class Webhooks:
    """Queues events durably and delivers them in the background."""

    def __init__(self, cfg: WebhooksConfig, db: Database) -> None:
        self.cfg = cfg
        self.db = db
        self.secret = read_secret(cfg.secret_file)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        """True when a URL is configured."""
        return bool(self.cfg.url)

    async def __aenter__(self) -> Webhooks:
        if self.enabled:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout)
            )
            self._task = asyncio.ensure_future(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    async def enqueue(self, event: str, data: dict[str, Any]) -> None:
        """Store an event for delivery (no-op when disabled or the type is not subscribed)."""
        if not self.enabled or event not in self.cfg.events:
            return
        did = secrets.token_hex(12)
        payload = json.dumps(
            {"id": did, "event": event, "at": time.time(), "data": data}, separators=(",", ":")
        )
        now = time.time()
        await self.db.execute(
            "INSERT INTO webhook_deliveries (id, url, event, payload, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (did, self.cfg.url, event, payload, now, now),
        )
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            due = await self.db.fetchall(
                "SELECT * FROM webhook_deliveries WHERE state = 'pending' AND next_at <= ? ORDER BY created_at LIMIT 50",
                (time.time(),),
            )
            for row in due:
                await self._deliver(dict(row))
            if not due:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()

    async def _deliver(self, row: dict[str, Any]) -> None:
        assert self._http is not None
        body = row["payload"].encode()
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Wasup-Delivery": row["id"],
            "X-Wasup-Event": row["event"],
            "X-Wasup-Timestamp": ts,
        }
        if self.secret:
            headers["X-Wasup-Signature"] = sign(self.secret, ts, body)
        status, error = None, ""
        try:
            async with self._http.post(row["url"], data=body, headers=headers) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempts = row["attempts"] + 1
        now = time.time()
        if status is not None and 200 <= status < 300:
            state, next_at = "delivered", 0.0
        elif (status is not None and not retryable(status)) or attempts >= self.cfg.max_attempts:
            state, next_at = "failed", 0.0
        else:
            delay = min(self.cfg.backoff_initial * 2 ** (attempts - 1), self.cfg.backoff_max)
            state, next_at = "pending", now + delay * random.uniform(0.8, 1.2)
        await self.db.execute(
            "UPDATE webhook_deliveries SET state = ?, attempts = ?, next_at = ?, last_status = ?, last_error = ?,"
            " updated_at = ? WHERE id = ?",
            (
                state,
                attempts,
                next_at,
                status,
                error or (f"HTTP {status}" if status and state != "delivered" else ""),
                now,
                row["id"],
            ),
        )
        if state != "delivered":
            log.warning(
                "webhook_not_delivered", id=row["id"], status=status, error=error, state=state
            )

    async def list(self, state: str, limit: int) -> list[dict[str, Any]]:
        """Deliveries in `state`, newest first."""
        rows = await self.db.fetchall(
            "SELECT id, event, state, attempts, next_at, last_status, last_error, created_at FROM webhook_deliveries"
            " WHERE state = ? ORDER BY created_at DESC LIMIT ?",
            (state, limit),
        )
        return [dict(r) for r in rows]
