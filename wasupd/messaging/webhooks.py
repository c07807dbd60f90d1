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
from typing import TYPE_CHECKING, Any

import structlog

from wasupd.config import WebhooksConfig
from wasupd.errors import ConfigError
from wasupd.loops import keep_running
from wasupd.store.db import Database
from wasupd.store.webhooks import DELIVERED, FAILED, PENDING, WebhookRepo

if TYPE_CHECKING:
    import aiohttp

log = structlog.get_logger("wasupd.webhooks")

# Longest wait between looks at the queue when nothing wakes the worker: an enqueue wakes it at
# once and a retry's due time is waited for exactly, so this only bounds a wall-clock jump.
IDLE_MAX = 60.0
HOLD_MARGIN = 60.0  # s beyond the request timeout that a reserved delivery stays ours


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


def retry_delay(cfg: WebhooksConfig, attempts: int, rng: random.Random) -> float:
    """Seconds before the next try after `attempts` failed ones: exponential from
    `backoff_initial`, capped at `backoff_max`, with +-20 % jitter so a fleet of daemons does
    not retry in step."""
    delay = min(cfg.backoff_initial * 2.0 ** (attempts - 1), cfg.backoff_max)
    return float(delay * rng.uniform(0.8, 1.2))


class Webhooks:
    """Queues events durably and delivers them in the background, inside `async with`."""

    def __init__(self, cfg: WebhooksConfig, db: Database, rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.repo = WebhookRepo(db)
        self.rng = rng or random.Random()
        self.secret = read_secret(cfg.secret_file)
        self._wake = asyncio.Event()
        self._group = asyncio.TaskGroup()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._stopping = False

    async def __aenter__(self) -> Webhooks:
        # Always running: a session may have its own URL even when the daemon has none, and
        # deliveries queued before a restart must still go out. The HTTP client (aiohttp,
        # about 10 MiB of RSS) is made at the first delivery: most daemons never send one.
        await self._group.__aenter__()
        self._task = self._group.create_task(keep_running("webhook_worker", self._loop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            # Let a delivery in flight finish and be recorded (bounded), so a receiver that got
            # it is not sent it again after the restart; then stop.
            self._stopping = True
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), self.cfg.timeout + 1)
            self._task.cancel()
        await self._group.__aexit__(None, None, None)
        if self._http is not None:
            await self._http.close()

    async def enqueue(self, event: str, data: dict[str, Any], extra_url: str | None = None) -> None:
        """Store an event for delivery to the daemon's URL and `extra_url` (a session's own);
        one delivery, with its own idempotency id, per URL. Nothing when no URL is set or the
        event type is not in `webhooks.events`."""
        urls = [u for u in dict.fromkeys([self.cfg.url, extra_url or ""]) if u]
        if not urls or event not in self.cfg.events:
            return
        now = time.time()
        rows = []
        for url in urls:
            did = secrets.token_hex(12)
            body = {"id": did, "event": event, "at": now, "data": data}
            rows.append((did, url, event, json.dumps(body, separators=(",", ":"))))
        await self.repo.add(rows, now)
        self._wake.set()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before reading, so an enqueue during the read still wakes us
            due = await self.repo.due(time.time())
            for row in due:
                if self._stopping:
                    return
                # Hosts of a fleet share the queue: each delivery is reserved by one first.
                if await self.repo.take(row["id"], time.time(), self.cfg.timeout + HOLD_MARGIN):
                    await self._deliver(row)
            if not due:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(await self._idle_for()):
                        await self._wake.wait()

    async def _idle_for(self) -> float:
        """Seconds until the next pending retry is due (at most `IDLE_MAX`)."""
        due = await self.repo.next_due_at()
        if due is None:
            return IDLE_MAX
        return float(min(max(due - time.time(), 0.0), IDLE_MAX))

    def _client(self) -> aiohttp.ClientSession:
        """The HTTP client, made (and aiohttp imported) at the first delivery."""
        import aiohttp

        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout)
            )
        return self._http

    async def _deliver(self, row: dict[str, Any]) -> None:
        import aiohttp

        http = self._client()
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
            async with http.post(row["url"], data=body, headers=headers) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempts = row["attempts"] + 1
        now = time.time()
        if status is not None and 200 <= status < 300:
            state, next_at = DELIVERED, 0.0
        elif (status is not None and not retryable(status)) or attempts >= self.cfg.max_attempts:
            state, next_at = FAILED, 0.0
        else:
            state, next_at = PENDING, now + retry_delay(self.cfg, attempts, self.rng)
        await self.repo.record_attempt(
            row["id"],
            state=state,
            attempts=attempts,
            next_at=next_at,
            status=status,
            error=error or (f"HTTP {status}" if status and state != DELIVERED else ""),
            now=now,
        )
        if state != DELIVERED:
            log.warning(
                "webhook_not_delivered", id=row["id"], status=status, error=error, state=state
            )

    async def retry(self, ids: list[str] | None) -> tuple[list[str], list[str]]:
        """Send failed deliveries again from scratch (attempts reset, due now): those in `ids`,
        or every failed one when `ids` is None. (requeued ids, ids that are not failed)."""
        wanted = await self.repo.failed_ids() if ids is None else list(dict.fromkeys(ids))
        requeued, skipped = await self.repo.requeue(wanted)
        if requeued:
            log.info("webhooks_requeued", count=len(requeued))
            self._wake.set()
        return requeued, skipped

    async def list(self, state: str, limit: int) -> list[dict[str, Any]]:
        """Deliveries in `state`, newest first."""
        return await self.repo.in_state(state, limit)
