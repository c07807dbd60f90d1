"""One session's sender: takes its messages (and free pool messages) in order, paced, exactly once.

Exactly once: the page's message id is stored (state `sending`) before the page is asked to
send. A message found in `sending` with an id (after a crash, a timeout or a dropped page) is
first looked up in the page by that id and only sent, with the same id, if it is not there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import structlog

from wasupd.addressing import Peer
from wasupd.config import SendConfig
from wasupd.errors import NotOnWhatsApp, StaleLease, WasupError
from wasupd.messaging.pacing import DAY, Decision, decide, draw_gap
from wasupd.store.messages import QUEUED, SENDING, SENT, MessageRepo, OutboxMessage
from wasupd.supervision.seams import MessagePort, OutboundMedia

log = structlog.get_logger("wasupd.messaging")

# Bounds one attempt (resolve, look up, send): a hung page must not hold the queue forever.
ATTEMPT_TIMEOUT = 60.0
# A file's attempt gets one more second for each MEDIA_RATE bytes (1 MiB/s at the worst).
MEDIA_RATE = float(1 << 20)
# Longest idle wait between looks at the store. New work, a connect and pool work wake the
# sender at once, and a due time is waited for exactly: this is only a safety net, and with 50
# idle sessions every look costs two queries.
IDLE_MAX = 120.0


class SendContext(Protocol):
    """What a sender needs of the outbox around it (`Messaging` is the one implementation)."""

    repo: MessageRepo
    rng: random.Random
    clock: Callable[[], float]

    def port(self, name: str) -> MessagePort | None:
        """The session's page when it is connected, else None."""
        ...

    def send_config(self, name: str) -> SendConfig:
        """`[send]` with the session's overrides."""
        ...

    def linked_at(self, name: str) -> float | None:
        """When the number was first linked (its age sets the day cap)."""
        ...

    def note_failure(self, name: str) -> None:
        """A send attempt failed (the pool trusts the session less for a while)."""
        ...

    def media_path(self, sha256: str) -> Path:
        """Where the media store keeps the file with that hash."""
        ...

    async def changed(self, msg: OutboxMessage, reason: str) -> None:
        """Publish an outbox state change."""
        ...

    async def fail(self, msg: OutboxMessage, why: str, attempts: int | None = None) -> None:
        """Give up on a message, with the reason."""
        ...

    async def hook(self, event: str, session: str, data: dict[str, Any]) -> None:
        """Queue a webhook delivery."""
        ...


class Sender:
    """Sends one session's messages; `run()` is its task for as long as the daemon runs."""

    def __init__(self, ms: SendContext, name: str) -> None:
        self.ms = ms
        self.name = name
        self.wake = asyncio.Event()
        self.busy = False  # True while an attempt is in flight (never cut by a logout)
        # The pause after a send is drawn once per send, keyed by that send's time.
        self._gap_for: float | None = None
        self._gap = 0.0

    async def run(self) -> None:
        """Loop forever: look for due work, pace it, send it; otherwise wait to be woken.

        A fault (the store briefly failing, say) ends this call; the owner runs it through
        `loops.keep_running`, which logs it, pauses and calls `run()` again.
        """
        log.info("sender_started", session=self.name)
        while True:
            await self.step()

    async def step(self) -> None:
        """One look at the store and at most one attempt."""
        self.wake.clear()  # before reading, so a wake-up during the read is not lost
        now = self.ms.clock()
        msg = await self.ms.repo.next_for(self.name, now)
        port = self.ms.port(self.name)
        if port is None:
            await self._idle(IDLE_MAX)
        elif msg is None:
            due = await self.ms.repo.next_due(self.name)
            await self._idle(IDLE_MAX if due is None else due - now)
        elif msg.state == QUEUED and (d := await self._pacing(now)).wait_until > now:
            await self._hold(msg, d, now)
        else:
            self.busy = True
            try:
                await self._attempt(port, msg)
            finally:
                self.busy = False

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(max(seconds, 0.0), IDLE_MAX)):
                await self.wake.wait()

    # -- pacing ----------------------------------------------------------------------------

    async def _pacing(self, now: float) -> Decision:
        cfg = self.ms.send_config(self.name)
        if not cfg.pacing:
            return Decision(now, "")
        sent = await self.ms.repo.sent_times(self.name, now - DAY)
        last = sent[-1] if sent else None
        if last != self._gap_for:
            self._gap_for, self._gap = last, draw_gap(cfg, self.ms.rng)
        return decide(cfg, sent, self.ms.linked_at(self.name), now, self._gap)

    async def _hold(self, msg: OutboxMessage, d: Decision, now: float) -> None:
        """Show why and until when the message waits; then wait (or until woken)."""
        if msg.wait_reason != d.reason or msg.not_before != d.wait_until:
            # A pool message keeps not_before at 0: another session may send it sooner.
            mine = msg.session == self.name
            await self.ms.repo.update(
                msg.id,
                wait_reason=d.reason,
                not_before=d.wait_until if mine else 0.0,
            )
        await self._idle(d.wait_until - now)

    # -- one attempt -----------------------------------------------------------------------

    async def _attempt(self, port: MessagePort, msg: OutboxMessage) -> None:
        if msg.session != self.name and not await self.ms.repo.take(msg.id, self.name):
            return  # another sender of the pool took it first
        claimed: str | None = msg.wa_id if msg.session == self.name else None
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT + (msg.media_size or 0) / MEDIA_RATE):
                chat = await port.resolve_chat(msg.chat_id)
                if claimed and await port.message_exists(chat, claimed):
                    await self._sent(msg, chat, port.peer(chat), recovered=True)
                    return
                claimed = claimed or await port.new_message_id()
                if not await self.ms.repo.claim(msg.id, self.name, claimed):
                    log.info(
                        "send_dropped", session=self.name, id=msg.id, why="cancelled meanwhile"
                    )
                    return
                await self._typing(port, chat, msg.body)
                await self._send(port, chat, msg, claimed)
            await self._sent(msg, chat, port.peer(chat), recovered=False)
        except StaleLease as exc:
            # Another host owns this session now (a fleet): leave the message as it is
            # for the owner, who looks its page id up before sending again.
            log.warning("send_fenced", session=self.name, id=msg.id, reason=exc.message)
            await self._idle(IDLE_MAX)  # not a hot loop: this host stops the session soon
        except NotOnWhatsApp as exc:
            await self.ms.fail(msg, exc.message)
        except (WasupError, TimeoutError) as exc:
            why = exc.message if isinstance(exc, WasupError) else "the page did not answer in time"
            await self._retry(dataclasses.replace(msg, wa_id=claimed), why)
        except Exception as exc:  # a driver bug must not stop this session's queue
            log.exception("send_error", session=self.name, id=msg.id)
            await self._retry(
                dataclasses.replace(msg, wa_id=claimed), f"{type(exc).__name__}: {exc}"
            )

    async def _send(self, port: MessagePort, chat: str, msg: OutboxMessage, mid: str) -> None:
        """A text, or the message's file from the media store with the body as its caption."""
        if msg.media_sha256 is None:
            await port.send_text(chat, msg.body, message_id=mid)
            return
        media = OutboundMedia(
            path=self.ms.media_path(msg.media_sha256),
            kind=msg.media_kind or "document",
            mimetype=msg.media_mime or "application/octet-stream",
            size=int(msg.media_size or 0),
            filename=msg.media_name or "",
            caption=msg.body,
        )
        await port.send_media(chat, media, message_id=mid)

    async def _typing(self, port: MessagePort, chat: str, body: str) -> None:
        """With `send.typing`: show "typing..." for a time that grows with the text (<= 3 s)."""
        if not self.ms.send_config(self.name).typing:
            return
        with contextlib.suppress(WasupError):
            await port.set_typing(chat, True)
            await asyncio.sleep(min(0.5 + len(body) / 50, 3.0))  # a human-looking pause

    async def _sent(self, msg: OutboxMessage, chat: str, peer: Peer, *, recovered: bool) -> None:
        """Mark it sent, counted for the person the page resolved (`peer`), and announce it."""
        row = await self.ms.repo.mark_sent(msg.id, self.name, chat, peer)
        if recovered:
            log.info("send_recovered", session=self.name, id=msg.id, wa_id=msg.wa_id)
        reason = "found in the page after a restart" if recovered else ""
        await self.ms.changed(row, reason)
        ids = {"recipient_pn": peer.pn, "recipient_lid": peer.lid}
        await self.ms.hook("sent", self.name, {"id": msg.id, "chat_id": chat, "state": SENT, **ids})

    async def _retry(self, msg: OutboxMessage, why: str) -> None:
        """Back off and try again; `failed` after send.max_attempts."""
        self.ms.note_failure(self.name)
        attempts = int(msg.attempts) + 1
        cfg = self.ms.send_config(self.name)
        if attempts >= cfg.max_attempts:
            await self.ms.fail(msg, f"gave up after {attempts} attempts: {why}", attempts)
            return
        delay = cfg.retry_backoff * 2 ** (attempts - 1) * self.ms.rng.uniform(0.8, 1.2)
        # Keep the stored page id: the next attempt looks it up before sending again.
        await self.ms.repo.update(
            msg.id,
            state=SENDING if msg.wa_id else QUEUED,
            attempts=attempts,
            last_error=why,
            not_before=self.ms.clock() + delay,
            wait_reason=f"retrying (attempt {attempts + 1} of {cfg.max_attempts})",
        )
        log.warning("send_retry", session=self.name, id=msg.id, attempts=attempts, error=why)
