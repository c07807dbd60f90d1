"""The event bus: filtering, ordering and slow subscribers."""

from __future__ import annotations

import asyncio

from wasupd import events
from wasupd.events import EventBus


async def test_filters_and_order() -> None:
    """Subscribers get matching events in publish order, with increasing seq."""
    bus = EventBus()
    sub = bus.subscribe(types=["state"], sessions=["a"])
    bus.publish("state", session="b")
    bus.publish("qr", session="a")
    bus.publish("state", session="a", to="qr")
    bus.publish("state", session="a", to="connected")
    sub.close()
    got = [e async for e in sub]
    assert [e["to"] for e in got] == ["qr", "connected"]
    assert got[0]["seq"] < got[1]["seq"]
    assert bus.subscriber_count == 0


async def test_slow_subscriber_is_dropped_not_blocking(monkeypatch: object) -> None:
    """A subscriber that falls QUEUE_SIZE behind gets an overflow event and is closed."""
    bus = EventBus()
    sub = bus.subscribe()
    for i in range(events.QUEUE_SIZE + 5):
        bus.publish("state", n=i)
    got = []
    async with asyncio.timeout(5):
        async for e in sub:
            got.append(e)
    assert got[-1]["type"] == "overflow"
