"""Campaigns in-process: real SQLite, event bus, Messaging and senders; fake pages and sessions."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.helpers.postgres import StoreTarget
from tests.unit.test_outbox import Env, FakeManager, FakePage, send_cfg, until
from wasupd.campaigns import plan as planner
from wasupd.campaigns.service import Campaigns
from wasupd.config import SendConfig
from wasupd.errors import CampaignExists, InvalidArgument
from wasupd.events import EventBus
from wasupd.messaging.pacing import DAY
from wasupd.store.campaigns import CampaignRepo
from wasupd.store.messages import MessageRepo


@pytest.fixture
async def env(store_target: StoreTarget) -> AsyncIterator[Env]:
    db = await store_target.open()
    try:
        yield Env(db, EventBus(), FakeManager(), send_cfg(), store_target)
    finally:
        await db.close()


@asynccontextmanager
async def running(e: Env) -> AsyncIterator[tuple[Campaigns, Any]]:
    async with e.messaging() as ms:
        repo = CampaignRepo(e.db, MessageRepo(e.db))
        async with Campaigns(
            config=lambda: e.config, repo=repo, messages=MessageRepo(e.db), messaging=ms, bus=e.bus
        ) as cs:
            ms.route_inbound_to(cs.on_inbound)
            yield cs, ms


def rows(n: int, start: int = 0) -> list[list[Any]]:
    return [[i + 2, {"phone": f"+1555{start + i:07d}", "name": f"n{i}"}] for i in range(n)]


async def create(cs: Campaigns, name: str, n: int, numbers: list[str], **kw: Any) -> dict[str, Any]:
    await cs.create(
        name=name,
        text="Hi {name}",
        columns=["phone", "name"],
        numbers=numbers,
        pin=kw.get("pin", False),
        window="",
        start=None,
        until=kw.get("until"),
    )
    errors = await cs.add(name, rows(n))
    assert errors == []
    return await cs.start(name, kw.get("dry_run", False))


def all_sent(pages: list[FakePage]) -> list[str]:
    return [chat for p in pages for chat, _, _ in p.sent]


async def test_bad_rows_are_listed_by_line_and_nothing_is_queued(env: Env) -> None:
    """Bad numbers, duplicates and empty fields are reported with their CSV lines; start refuses."""
    env.manager.add("a", FakePage())
    async with running(env) as (cs, _):
        await cs.create(
            name="c",
            text="Hi {name}",
            columns=["phone", "name"],
            numbers=["a"],
            pin=False,
            window="",
            start=None,
            until=None,
        )
        bad = [
            [2, {"phone": "+15550000001", "name": "x"}],
            [3, {"phone": "12", "name": "y"}],
            [4, {"phone": "+15550000001", "name": "z"}],
            [5, {"phone": "+15550000002", "name": ""}],
        ]
        errors = await cs.add("c", bad)
        assert [e.split(":")[0] for e in errors] == ["line 3", "line 5", "line 4"]
        assert "duplicate of line 2" in errors[2]
        with pytest.raises(InvalidArgument, match="nothing was queued"):
            await cs.start("c", False)
    assert await env.repo.counts() == {}


async def test_missing_template_column_is_refused_before_rows(env: Env) -> None:
    """A text that uses a column the header lacks is refused at create."""
    env.manager.add("a", FakePage())
    async with running(env) as (cs, _):
        with pytest.raises(InvalidArgument, match=r"\{city\}"):
            await cs.create(
                name="c",
                text="Hi {city}",
                columns=["phone"],
                numbers=["a"],
                pin=False,
                window="",
                start=None,
                until=None,
            )


async def test_every_recipient_exactly_once_and_create_twice_refused(env: Env) -> None:
    """300 recipients over three numbers are each sent once; a second create is refused."""
    pages = [FakePage(), FakePage(), FakePage()]
    for name, page in zip("abc", pages, strict=True):
        env.manager.add(name, page)
    async with running(env) as (cs, ms):
        plan = await create(cs, "c", 300, ["a", "b", "c"])
        assert sum(p["count"] for p in plan["numbers"].values()) == 300
        await until(lambda: len(all_sent(pages)) == 300)
        with pytest.raises(CampaignExists):
            await create(cs, "c", 300, ["a", "b", "c"])
        await until(lambda: cs.repo.get("c"), timeout=10)
        assert sorted(all_sent(pages)) == sorted({c for c in all_sent(pages)})
        await until(lambda: _state(cs, "c", "finished"))
        await ms.on_report("a", _inbound(all_sent(pages)[0], "thanks!"))
        assert (await cs.show("c"))["totals"]["replied"] == 1  # pages[0] is session a


async def _state(cs: Campaigns, name: str, state: str) -> bool:
    return (await cs.repo.get(name)).state == state


def test_shares_follow_capacity_of_numbers_of_different_ages() -> None:
    """Three numbers aged 1, 10 and 60 days share 300 recipients by their day caps."""
    cfg = SendConfig(jitter_min=0.01, jitter_max=0.02, per_minute=0, per_hour=0)
    now = 1_800_000_000.0
    numbers = [
        planner.number_for(
            n, cfg, linked_at=now - age * DAY, now=now, sent_day=0, health=1.0, window=""
        )
        for n, age in (("new", 1), ("young", 10), ("old", 60))
    ]
    share = planner.shares(numbers, 300, {})
    caps = {"new": 500, "young": 1500, "old": 3000}
    for name, count in share.items():
        assert abs(count - 300 * caps[name] / 5000) <= 0.1 * 300 * caps[name] / 5000
    times = sorted(planner.slots(numbers[0], share["new"], now, random.Random(1)))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= cfg.jitter_max  # never closer than the pacing pause


def test_window_sends_stop_short_of_the_close_and_continue_next_day() -> None:
    """A day's part is spread across the window and ends CLOSE_MARGIN before it closes (room
    for the send itself); what does not fit goes to the next day's window."""
    cfg = SendConfig(per_minute=60, per_hour=3600, jitter_min=0.5, jitter_max=1.0)
    lt = time.localtime()
    opens = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday + 1, 9, 0, 0, 0, 0, -1))
    n = planner.number_for(
        "a", cfg, linked_at=opens - 60 * DAY, now=opens, sent_day=0, health=1.0,
        window="09:00-09:10",
    )  # fmt: skip
    times = list(planner.slots(n, n.capacity + 5, opens, random.Random(3)))
    first_day = [t for t in times if t < opens + DAY / 2]
    assert len(first_day) == n.capacity == int((600 - planner.CLOSE_MARGIN) / n.spacing)
    assert max(first_day) <= opens + 600 - planner.CLOSE_MARGIN
    assert all(opens + DAY - 3600 < t < opens + DAY + 600 for t in times[n.capacity :])


def test_until_refusal_says_what_is_missing() -> None:
    """A plan that cannot finish in time names how many more numbers or days it needs."""
    cfg = SendConfig(new_number_per_day=10, per_day=10)
    now = 1_800_000_000.0
    n = planner.number_for("a", cfg, linked_at=now, now=now, sent_day=0, health=1.0, window="")
    msg = planner.shortfall([n], 35, now, now + DAY)
    assert "add 3 more number(s)" in msg and "3 more day(s)" in msg


async def test_opt_out_before_and_during(env: Env) -> None:
    """A suppressed contact is skipped; a STOP cancels its queued campaign message."""
    env.manager.add("a", FakePage())
    async with running(env) as (cs, ms):
        await cs.opt_out("15550000000@c.us", "operator")
        later = time.time() + 3600  # planned an hour ahead: still queued when STOP arrives
        await cs.create(
            name="c",
            text="Hi {name}",
            columns=["phone", "name"],
            numbers=["a"],
            pin=False,
            window="",
            start=later,
            until=None,
        )
        await cs.add("c", rows(3))
        plan = await cs.start("c", False)
        assert plan["opted_out"] == 1 and plan["recipients"] == 2
        await ms.on_report("a", _inbound("15550000001@c.us", " stop "))
        shown = await cs.show("c")
        assert shown["totals"] == {"opted_out": 2, "queued": 1, "replied": 0}
        report = await cs.repo.report((await cs.repo.get("c")).id, 0, 10)
        assert [r["state"] for r in report] == ["opted_out", "opted_out", "queued"]


def _inbound(chat: str, body: str) -> Any:
    from wasupd.supervision.seams import DriverReport

    return DriverReport(
        kind="message",
        data={"id": f"in-{chat}-{body}", "chat_id": chat, "sender": chat, "body": body, "t": 1.0},
    )


async def test_pause_resume_cancel(env: Env) -> None:
    """Paused: nothing more is sent; resumed: the rest goes; cancelled: the queued are cancelled."""
    page = FakePage()
    env.manager.add("a", page)
    async with running(env) as (cs, _):
        await cs.create(
            name="c",
            text="Hi {name}",
            columns=["phone", "name"],
            numbers=["a"],
            pin=False,
            window="",
            start=None,
            until=None,
        )
        await cs.add("c", rows(5))
        page.gate = __import__("asyncio").Event()
        await cs.start("c", False)
        await cs.pause("c")
        page.gate.set()
        await until(lambda: len(page.sent) <= 1)
        assert len(page.sent) <= 1  # at most the one already in flight
        await cs.resume("c")
        await until(lambda: len(page.sent) == 5)
        await until(lambda: _state(cs, "c", "finished"))
        await cs.create(
            name="d",
            text="Hi {name}",
            columns=["phone", "name"],
            numbers=["a"],
            pin=False,
            window="",
            start=time.time() + 3600,
            until=None,
        )
        await cs.add("d", rows(4, start=100))
        await cs.start("d", False)
        await cs.cancel("d")
        assert (await cs.show("d"))["totals"] == {"cancelled": 4, "replied": 0}
