"""Messaging: accepts messages durably, sends them exactly once at a safe pace, stores replies.

- `message.send` commits before it replies (group commit: concurrent calls share one fsync).
- One sender task per connected session takes that session's messages in order, plus pool
  (`auto`) messages. Before sending, the page's message id is stored; after a crash a message
  left in `sending` is first looked up in the page by that id, so it is never sent twice.
- Inbound messages are stored in the inbox before they are published as events.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import TYPE_CHECKING, Any

import structlog

from wasupd.config import Config
from wasupd.errors import BrowserError, NotOnWhatsApp, WasupError
from wasupd.events import EventBus
from wasupd.messaging.pacing import DAY, decide
from wasupd.store.messages import CANCELLED, FAILED, QUEUED, SENDING, SENT, MessageRepo
from wasupd.supervision.seams import DriverReport, MessagePort
from wasupd.supervision.states import SessionState

if TYPE_CHECKING:
    from wasupd.messaging.webhooks import Webhooks
    from wasupd.sessions import SessionManager

log = structlog.get_logger("wasupd.messaging")
BATCH_WINDOW = 0.002


class Messaging:
    """The outbox, inbox and pool; lives inside `async with` for the daemon's lifetime."""

    def __init__(
        self,
        *,
        config: Config,
        repo: MessageRepo,
        manager: SessionManager,
        bus: EventBus,
        webhooks: Webhooks | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.repo = repo
        self.manager = manager
        self.bus = bus
        self.webhooks = webhooks
        self.rng = rng or random.Random()
        self._pending: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]] = []
        self._flush: asyncio.Task[None] | None = None
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._watch: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Messaging:
        sub = self.bus.subscribe(types=["state", "deleted"])
        self._watch = asyncio.ensure_future(self._follow_states(sub))
        for name, runner in self.manager.runners.items():
            if runner.state is SessionState.CONNECTED:
                self._start_worker(name)
        return self

    async def __aexit__(self, *exc: object) -> None:
        tasks = [t for t in (self._watch, self._flush) if t] + list(self._workers.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def update_config(self, config: Config) -> None:
        """SIGHUP: pacing keys apply to the next decision."""
        self.config = config

    # -- accepting -------------------------------------------------------------------------

    async def enqueue(self, item: dict[str, Any]) -> dict[str, Any]:
        """Durably queue one message (shares a transaction with concurrent callers)."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._flush is None or self._flush.done():
            self._flush = asyncio.ensure_future(self._flush_pending())
        msg = await fut
        self._poke(msg.get("session"))
        if msg["state"] == QUEUED:
            self.bus.publish(
                "outbox", id=msg["id"], session=msg["session"], state=QUEUED, reason=""
            )
        return msg

    async def _flush_pending(self) -> None:
        while self._pending:
            await asyncio.sleep(BATCH_WINDOW)
            batch, self._pending = self._pending, []
            try:
                rows = await self.repo.enqueue_many([item for item, _ in batch])
            except Exception as exc:
                for _, fut in batch:
                    fut.set_exception(exc)
                continue
            for (_, fut), row in zip(batch, rows, strict=True):
                fut.set_result(row)

    async def pick_session(self, chat_id: str) -> str | None:
        """For `auto`: the contact's last session if connected, else weighted by capacity."""
        connected = [
            n for n, r in self.manager.runners.items() if r.state is SessionState.CONNECTED
        ]
        if not connected:
            return None
        last = await self.repo.last_session_for(chat_id)
        if last in connected:
            return last
        now = time.time()
        weights = []
        for name in connected:
            sent = await self.repo.sent_times(name, now - 3600)
            weights.append(max(1.0, float(self.config.send.per_hour - len(sent))))
        return self.rng.choices(connected, weights=weights)[0]

    def _poke(self, session: str | None) -> None:
        targets = [session] if session else list(self._wake)
        for name in targets:
            ev = self._wake.get(name)
            if ev is not None:
                ev.set()

    # -- sessions coming and going ---------------------------------------------------------

    async def _follow_states(self, sub: Any) -> None:
        async for event in sub:
            name, to = event["session"], event.get("to")
            if to == SessionState.CONNECTED.value:
                self._start_worker(name)
            elif to in ("logged_out", "failed") and await self.repo.release_to_pool(name):
                # Its queued pool messages go to the others; a sender never stops mid-send
                # (it idles while its session is not connected), so nothing is cut in half.
                self._poke(None)
            elif event.get("type") == "deleted" and name in self._workers:
                self._workers.pop(name).cancel()

    def _start_worker(self, name: str) -> None:
        if name in self._workers and not self._workers[name].done():
            self._wake[name].set()
            return
        self._wake[name] = asyncio.Event()
        self._workers[name] = asyncio.ensure_future(self._worker(name))

    # -- sending ---------------------------------------------------------------------------

    def _port(self, name: str) -> MessagePort | None:
        runner = self.manager.runners.get(name)
        if runner is None or runner.state is not SessionState.CONNECTED or runner.driver is None:
            return None
        return runner.driver  # type: ignore[return-value]

    async def _worker(self, name: str) -> None:
        wake = self._wake[name]
        log.info("sender_started", session=name)
        while True:
            msg = await self.repo.next_for(name, time.time())
            port = self._port(name)
            if msg is None or port is None:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await wake.wait()
                continue
            if msg["state"] == QUEUED and not await self._paced(name, msg, wake):
                continue
            await self._send_one(name, port, msg)

    async def _paced(self, name: str, msg: dict[str, Any], wake: asyncio.Event) -> bool:
        """Wait for pacing; False if the caller should look again (a wait was recorded)."""
        now = time.time()
        sent = await self.repo.sent_times(name, now - DAY)
        linked = self.manager.records[name].linked_at if name in self.manager.records else None
        d = decide(self.config.send, sent, linked, now, self.rng)
        if d.wait_until <= now:
            return True
        await self.repo.update(msg["id"], not_before=d.wait_until, wait_reason=d.reason)
        wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(d.wait_until - now, 60.0)):
                await wake.wait()
        return False

    async def _send_one(self, name: str, port: MessagePort, msg: dict[str, Any]) -> None:
        mid = msg["id"]
        if msg["session"] != name and not await self.repo.take(mid, name):
            return  # another sender of the pool took it first
        claimed = msg["wa_id"] if msg["session"] == name else None
        try:
            chat = await port.resolve_chat(msg["chat_id"])
            # After a crash: the page may already hold this message; never send it twice.
            if claimed and await port.message_exists(chat, claimed):
                await self._mark_sent(name, msg, chat, recovered=True)
                return
            wa_id = claimed or await port.new_message_id()
            await self.repo.claim(mid, name, wa_id)
            claimed = wa_id
            if self.config.send.typing:
                with contextlib.suppress(Exception):
                    await port.set_typing(chat, True)
            await port.send_text(chat, msg["body"], message_id=wa_id)
            await self._mark_sent(name, {**msg, "wa_id": wa_id}, chat, recovered=False)
        except NotOnWhatsApp as exc:
            await self._fail(msg, exc.message)
        except (BrowserError, WasupError) as exc:
            await self._retry({**msg, "wa_id": claimed}, exc.message)

    async def _mark_sent(
        self, name: str, msg: dict[str, Any], chat: str, *, recovered: bool
    ) -> None:
        await self.repo.update(
            msg["id"], state=SENT, sent_at=time.time(), wait_reason="", session=name
        )
        await self.repo.touch_contact(chat, name)
        self.bus.publish(
            "outbox",
            id=msg["id"],
            session=name,
            state=SENT,
            reason="recovered" if recovered else "",
        )
        if self.webhooks:
            await self.webhooks.enqueue("sent", {"id": msg["id"], "session": name, "chat_id": chat})

    async def _retry(self, msg: dict[str, Any], why: str) -> None:
        attempts = int(msg["attempts"]) + 1
        if attempts >= self.config.send.max_attempts:
            await self._fail(msg, f"gave up after {attempts} attempts: {why}", attempts=attempts)
            return
        delay = self.config.send.retry_backoff * 2 ** (attempts - 1)
        # Back to queued, keeping the stored wa_id: the next attempt checks it first.
        await self.repo.update(
            msg["id"],
            state=SENDING if msg["wa_id"] else QUEUED,
            attempts=attempts,
            last_error=why,
            not_before=time.time() + delay,
            wait_reason=f"retry {attempts} after: {why}",
        )
        log.warning("send_retry", id=msg["id"], attempts=attempts, error=why)

    async def _fail(self, msg: dict[str, Any], why: str, attempts: int | None = None) -> None:
        await self.repo.update(
            msg["id"], state=FAILED, last_error=why, attempts=attempts or msg["attempts"]
        )
        self.bus.publish("outbox", id=msg["id"], session=msg["session"], state=FAILED, reason=why)

    async def cancel(self, mid: str) -> dict[str, Any]:
        """Cancel a queued message."""
        from wasupd.errors import InvalidState

        msg = await self.repo.get(mid)
        if not await self.repo.cancel(mid):
            raise InvalidState(
                f"message {mid} is {msg['state']}; only a queued message can be cancelled"
            )
        self.bus.publish(
            "outbox", id=mid, session=msg["session"], state=CANCELLED, reason="cancelled"
        )
        return await self.repo.get(mid)

    # -- reports from pages ----------------------------------------------------------------

    async def on_report(self, name: str, report: DriverReport) -> None:
        """Store inbound messages and acks; publish them."""
        if report.kind == "message":
            row = await self.repo.store_inbound(name, report.data)
            if row is not None:
                self.bus.publish(
                    "message",
                    **{k: v for k, v in row.items() if k not in ("id", "type")},
                    inbox_id=row["id"],
                    msg_type=row["type"],
                )
                if self.webhooks:
                    await self.webhooks.enqueue("message", row)
        elif report.kind == "ack":
            wa_id = str(report.data.get("id") or "")
            changed = await self.repo.ack(wa_id, int(report.data.get("ack") or 0))
            if changed is not None:
                self.bus.publish(
                    "outbox", id=changed["id"], session=name, state=changed["state"], reason="ack"
                )
                self.bus.publish("ack", session=name, id=changed["id"], ack=report.data.get("ack"))
                if self.webhooks:
                    await self.webhooks.enqueue(
                        "ack", {"id": changed["id"], "session": name, "state": changed["state"]}
                    )
