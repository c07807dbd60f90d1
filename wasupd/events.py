"""The in-process event bus: state changes, QR rotations, messages and acks fan out to subscribers.

Publishing never blocks: each subscriber has a bounded queue, and a subscriber that falls that
far behind is dropped (its stream ends with an `overflow` event) rather than slowing the daemon.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Collection
from typing import Any

QUEUE_SIZE = 10_000


class Subscription:
    """One subscriber's queue; iterate it to receive events until it is closed."""

    def __init__(self, bus: EventBus, types: Collection[str], sessions: Collection[str]) -> None:
        self._bus = bus
        self.types = frozenset(types)
        self.sessions = frozenset(sessions)
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_SIZE)
        self.closed = False

    def wants(self, event: dict[str, Any]) -> bool:
        """True when the event passes this subscription's type and session filters."""
        if self.types and event["type"] not in self.types:
            return False
        return not (self.sessions and event.get("session") not in self.sessions)

    def offer(self, event: dict[str, Any]) -> None:
        """Queue `event` without blocking; on overflow end the stream with an `overflow` event."""
        if self.closed or not self.wants(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.closed = True
            self._drain()
            self.queue.put_nowait({"type": "overflow", "reason": "subscriber too slow"})
            self.queue.put_nowait(None)

    def _drain(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()

    def close(self) -> None:
        """End the stream; the iterator stops after queued events."""
        if not self.closed:
            self.closed = True
            self._bus.unsubscribe(self)
            try:
                self.queue.put_nowait(None)
            except asyncio.QueueFull:
                self._drain()
                self.queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            event = await self.queue.get()
            if event is None:
                return
            yield event


class EventBus:
    """Fans events out to subscriptions; events get a sequence number and a timestamp."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._seq = itertools.count(1)

    def subscribe(
        self, types: Collection[str] = (), sessions: Collection[str] = ()
    ) -> Subscription:
        """A new subscription filtered by event types and session names (empty: all)."""
        sub = Subscription(self, types, sessions)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget `sub` (idempotent)."""
        self._subs.discard(sub)

    def publish(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send an event of `type_` to every matching subscriber; returns the event."""
        event = {**fields, "type": type_, "seq": next(self._seq), "at": time.time()}
        for sub in list(self._subs):
            sub.offer(event)
        return event

    def close_all(self) -> None:
        """End every subscription (daemon shutdown)."""
        for sub in list(self._subs):
            sub.close()

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subs)
