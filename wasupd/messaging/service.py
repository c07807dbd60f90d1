"""Messaging: accepts messages durably, sends them exactly once at a safe pace, stores replies.

- `message.send` commits before it replies (group commit: concurrent calls share one fsync).
- One `Sender` per connected session takes that session's messages in order, plus pool
  (`auto`) messages; see `sender.py` for exactly-once.
- Inbound messages are stored in the inbox before they are published as events; acks move
  outbox messages forward; session state changes, inbound messages and acks go to webhooks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from wasupd.addressing import Peer
from wasupd.config import Config, SendConfig
from wasupd.errors import InvalidArgument, InvalidState, WasupError
from wasupd.events import EventBus, Subscription
from wasupd.loops import keep_running
from wasupd.messaging import downloads, pool
from wasupd.messaging.downloads import Downloads
from wasupd.messaging.pacing import with_overrides
from wasupd.messaging.seams import SessionDirectory
from wasupd.messaging.sender import Sender
from wasupd.messaging.webhooks import Webhooks
from wasupd.store.media import MediaStore
from wasupd.store.messages import (
    CANCELLED,
    FAILED,
    QUEUED,
    MessageRepo,
    NewMessage,
    OutboxMessage,
)
from wasupd.supervision.seams import DriverReport, MessagePort
from wasupd.supervision.states import SessionState

log = structlog.get_logger("wasupd.messaging")
# Group commit needs no timer: calls that arrive while a transaction commits form the next one.
# At most this many messages per transaction (bounded statement size and commit latency).
MAX_BATCH = 1000
# Send failures within this many seconds lower a session's health for the pool.
HEALTH_WINDOW = 600.0
# States after which a session's queued `auto` messages go back to the pool.
DROPPED = (SessionState.LOGGED_OUT.value, SessionState.FAILED.value)
FOLLOWED = ("state", "deleted")
# Called with (session, inbox row) after an inbound message is stored and announced.
InboundHook = Callable[[str, dict[str, Any]], Awaitable[None]]


class Messaging:
    """The outbox, inbox and pool; lives inside `async with` for the daemon's lifetime."""

    def __init__(
        self,
        *,
        config: Config,
        repo: MessageRepo,
        sessions: SessionDirectory,
        bus: EventBus,
        webhooks: Webhooks | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        media: MediaStore | None = None,
    ) -> None:
        """`media`: the media store (default: under `daemon.state_dir`)."""
        self.config = config
        self.media = media or MediaStore(config.state.media)
        self.downloads = Downloads(repo=repo, store=self.media, port=self.port)
        self._fetches: set[asyncio.Task[None]] = set()  # received files being fetched
        self.repo = repo
        self.sessions = sessions
        self.bus = bus
        self.webhooks = webhooks
        self.rng = rng or random.Random()
        self.clock = clock
        self.senders: dict[str, Sender] = {}
        self._pending: list[tuple[NewMessage, asyncio.Future[tuple[OutboxMessage, bool]]]] = []
        self._failures: dict[str, collections.deque[float]] = {}
        self._warned: set[tuple[str, str]] = set()
        self._inbound_hooks: list[InboundHook] = []
        self._group = asyncio.TaskGroup()
        self._tasks: dict[str, asyncio.Task[None]] = {}  # senders by session
        self._watch: asyncio.Task[None] | None = None
        self._flush: asyncio.Task[None] | None = None
        # The follower's first subscription, taken at entry so that no event is missed.
        self._sub: Subscription | None = None

    async def __aenter__(self) -> Messaging:
        await self._group.__aenter__()
        self._sub = self.bus.subscribe(types=FOLLOWED)
        self._sync_senders()
        self._watch = self._group.create_task(keep_running("state_follower", self._follow_states))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in [self._watch, self._flush, *self._tasks.values(), *self._fetches]:
            if task is not None:
                task.cancel()
        await self._group.__aexit__(None, None, None)

    def update_config(self, config: Config) -> None:
        """SIGHUP: pacing keys apply to the next decision."""
        self.config = config
        self._poke(None)

    # -- what senders ask ------------------------------------------------------------------

    def send_config(self, name: str) -> SendConfig:
        """`[send]` with the session's `send` option applied (bad overrides are ignored, logged)."""
        overrides = self.sessions.options_of(name).get("send")
        try:
            return with_overrides(self.config.send, overrides)
        except InvalidArgument as exc:
            if (name, exc.message) not in self._warned:
                self._warned.add((name, exc.message))
                log.warning("send_option_ignored", session=name, error=exc.message)
            return self.config.send

    def linked_at(self, name: str) -> float | None:
        """When the number was first linked (its age sets the day cap)."""
        return self.sessions.linked_at(name)

    def port(self, name: str) -> MessagePort | None:
        """The session's page when it is connected, else None."""
        return self.sessions.port(name)

    def media_path(self, sha256: str) -> Path:
        """Where the media store keeps the file with that hash."""
        return self.media.path(sha256)

    def note_failure(self, name: str) -> None:
        """A send attempt failed: the pool trusts this session a little less for a while."""
        self._failures.setdefault(name, collections.deque(maxlen=100)).append(self.clock())

    def health(self, name: str) -> float:
        """The pool's trust in a session: 1.0, lower after send failures in the last 10 min."""
        now = self.clock()
        fails = sum(1 for t in self._failures.get(name, ()) if t > now - HEALTH_WINDOW)
        return pool.health(fails)

    def wake(self, session: str | None) -> None:
        """New work was queued outside `enqueue` (a campaign): wake its sender, or all."""
        self._poke(session)

    def route_inbound_to(self, hook: InboundHook) -> None:
        """Call `hook(session, row)` for each newly stored inbound message (opt-outs, replies)."""
        self._inbound_hooks.append(hook)

    # -- accepting -------------------------------------------------------------------------

    async def enqueue(self, item: NewMessage) -> OutboxMessage:
        """Durably queue one message; returns once it is committed (sharing the transaction
        with concurrent callers). A repeated idempotency key returns the first message."""
        fut: asyncio.Future[tuple[OutboxMessage, bool]] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._flush is None or self._flush.done():
            self._flush = self._group.create_task(self._flush_pending())
        msg, duplicate = await fut
        if not duplicate:
            self._poke(msg.session)
            self.bus.publish("outbox", id=msg.id, session=msg.session, state=QUEUED, reason="")
        return msg

    async def _flush_pending(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let calls already on their way join this commit
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                rows = await self.repo.enqueue_many([item for item, _ in batch])
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), row in zip(batch, rows, strict=True):
                if not fut.done():  # the caller may have gone (cancelled)
                    fut.set_result(row)

    async def pick_session(self, chat_id: str) -> str | None:
        """For `auto`: the session the contact (by number or LID: one person) last talked to
        when it is connected; else a connected one weighted by remaining capacity and health;
        None when none is connected. In a fleet every host's connected sessions count (the
        owner sends); health is what this host saw of their sends."""
        connected = list(self.sessions.connected_anywhere())
        if not connected:
            return None
        last = await self.repo.last_session_for(chat_id)
        if last in connected:
            return last
        now = self.clock()
        load = await self.repo.load(connected, now)
        candidates = []
        for name in connected:
            hour, day, backlog = load[name]
            room = pool.remaining(
                self.send_config(name),
                self.linked_at(name),
                now,
                sent_hour=hour,
                sent_day=day,
                backlog=backlog,
            )
            candidates.append(pool.Candidate(name, room, self.health(name)))
        return pool.choose(candidates, self.rng)

    # -- state changes ---------------------------------------------------------------------

    async def changed(self, msg: OutboxMessage, reason: str) -> None:
        """Publish an outbox state change."""
        self.bus.publish(
            "outbox", id=msg.id, session=msg.session, state=msg.state.value, reason=reason
        )

    async def fail(self, msg: OutboxMessage, why: str, attempts: int | None = None) -> None:
        """Give up on a message, with the reason."""
        await self.repo.update(
            msg.id, state=FAILED, last_error=why, attempts=attempts or msg.attempts
        )
        self.bus.publish("outbox", id=msg.id, session=msg.session, state=FAILED, reason=why)
        log.warning("send_failed", id=msg.id, session=msg.session, reason=why)

    async def cancel(self, mid: str) -> OutboxMessage:
        """Cancel a queued message; InvalidState once it is being sent or done."""
        msg = await self.repo.get(mid)
        if not await self.repo.cancel(mid):
            raise InvalidState(
                f"message {mid} is {msg.state}; only a queued message can be cancelled"
            )
        self.bus.publish("outbox", id=mid, session=msg.session, state=CANCELLED, reason="cancelled")
        return await self.repo.get(mid)

    async def hook(self, event: str, session: str, data: dict[str, Any]) -> None:
        """Queue a webhook delivery to the daemon's URL and the session's own (option
        `webhook_url`), if any."""
        if self.webhooks is None:
            return
        extra = self.sessions.options_of(session).get("webhook_url")
        await self.webhooks.enqueue(event, {"session": session, **data}, extra_url=extra)

    # -- sessions coming and going ---------------------------------------------------------

    async def _follow_states(self) -> None:
        """Apply session state changes to senders and the pool, for the daemon's lifetime.

        When the subscription overflows, or the loop is entered again after a fault, it
        resubscribes and catches up from the sessions' current states.
        """
        sub, self._sub = self._sub, None
        while True:
            if sub is None:
                sub = self.bus.subscribe(types=FOLLOWED)
                await self._catch_up()
            try:
                async for event in sub:
                    with contextlib.suppress(WasupError):
                        await self._on_state(event)
            finally:
                sub.close()  # a fault or an overflow: this one is done, the next catches up
            sub = None

    async def _catch_up(self) -> None:
        """Events may have been missed: senders for connected sessions, dropped ones' pool work."""
        self._sync_senders()
        for name in list(self.sessions.names()):
            state = self.sessions.state_of(name)
            if state is not None and state.value in DROPPED:
                await self.repo.release_to_pool(name)
        self._poke(None)

    async def _on_state(self, event: dict[str, Any]) -> None:
        name = event.get("session")
        if not isinstance(name, str):
            return
        if event["type"] == "deleted":
            await self._session_deleted(name)
            return
        to = event.get("to")
        if to == SessionState.CONNECTED.value:
            self._start_sender(name)
        elif to in DROPPED and await self.repo.release_to_pool(name):
            # Its queued pool messages go to the others; a message already `sending` stays:
            # only this session's page can tell whether it went out.
            self._poke(None)
        if event.get("elsewhere"):
            # A fleet host stopping a session another host runs now (a move, a lost lease):
            # to a webhook's reader the session did not change, it is connected over there.
            return
        data = {k: event.get(k) for k in ("from", "to", "reason")}
        await self.hook("state", name, data)

    async def _session_deleted(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        self.senders.pop(name, None)
        if task is not None:
            task.cancel()
        if await self.repo.release_to_pool(name):
            self._poke(None)
        for mid in await self.repo.fail_waiting(name, f"session {name} was deleted"):
            self.bus.publish("outbox", id=mid, session=name, state=FAILED, reason="deleted")

    def _sync_senders(self) -> None:
        for name in list(self.sessions.names()):
            if self.sessions.state_of(name) is SessionState.CONNECTED:
                self._start_sender(name)

    def _start_sender(self, name: str) -> None:
        task = self._tasks.get(name)
        if task is not None and not task.done():
            self.senders[name].wake.set()
            return
        self.senders[name] = sender = Sender(self, name)
        self._tasks[name] = self._group.create_task(keep_running(f"sender:{name}", sender.run))

    def _poke(self, session: str | None) -> None:
        """Wake one session's sender, or every sender (pool work)."""
        targets = [session] if session in self.senders else list(self.senders)
        for name in targets:
            if name is not None:
                self.senders[name].wake.set()

    # -- reports from pages ----------------------------------------------------------------

    async def on_report(self, name: str, report: DriverReport) -> None:
        """Store inbound messages (before announcing them) and apply acks."""
        if report.kind == "message":
            await self._inbound(name, report.data)
        elif report.kind == "ack":
            await self._ack(name, report.data)

    async def _inbound(self, name: str, data: dict[str, Any]) -> None:
        row = await self.repo.store_inbound(name, data)
        if row is None:
            return  # seen before (the page replays recent messages after a reload)
        self.bus.publish(
            "message",
            **{k: v for k, v in row.items() if k not in ("id", "type")},
            inbox_id=row["id"],
            msg_type=row["type"],
        )
        await self.hook("message", name, {k: v for k, v in row.items() if k != "session"})
        if downloads.wanted(self.config.media, row):
            task = self._group.create_task(self.downloads.on_arrival(self.config.media, row))
            self._fetches.add(task)
            task.add_done_callback(self._fetches.discard)
        for inbound_hook in self._inbound_hooks:
            try:
                await inbound_hook(name, row)
            except Exception:  # an add-on's fault must not lose the page's next reports
                log.exception("inbound_hook_failed", session=name)

    async def _ack(self, name: str, data: dict[str, Any]) -> None:
        wa_id = str(data.get("id") or "")
        try:
            ack = int(data.get("ack") or 0)
        except (TypeError, ValueError):
            return
        peer = Peer.of(None, pn=data.get("chat_pn"), lid=data.get("chat_lid"))
        if peer.pn and peer.lid:  # the page knows both: one contact from now on
            await self.repo.contacts.learn(peer)
        msg = await self.repo.ack(wa_id, ack)
        if msg is None:
            return
        await self.changed(msg, "ack" if ack >= 0 else msg.last_error)
        state = msg.state.value
        ids = {"recipient_pn": peer.pn, "recipient_lid": peer.lid}
        self.bus.publish("ack", session=name, id=msg.id, ack=ack, state=state, **ids)
        await self.hook("ack", name, {"id": msg.id, "ack": ack, "state": state, **ids})
