"""Pool sending: weights by capacity and health, reply stickiness, a dropped session's messages."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import replace

from tests.unit.test_outbox import BOB, Env, FakePage, env, item, reaches, until
from wasupd.config import SendConfig
from wasupd.errors import BrowserError
from wasupd.messaging import pool
from wasupd.supervision.seams import DriverReport
from wasupd.supervision.states import SessionState

__all__ = ["env"]  # the fixture, shared with test_outbox
NOW = 1_800_000_000.0


def test_draws_follow_remaining_capacity_and_health() -> None:
    """A session with 9x the room gets ~90 % of the draws; an unhealthy one fewer; a full one ~none."""
    rng = random.Random(1)
    got = Counter(
        pool.choose([pool.Candidate("big", 900, 1.0), pool.Candidate("small", 100, 1.0)], rng)
        for _ in range(5000)
    )
    assert 0.87 < got["big"] / 5000 < 0.93
    sick = Counter(
        pool.choose([pool.Candidate("ok", 100, 1.0), pool.Candidate("sick", 100, 0.25)], rng)
        for _ in range(5000)
    )
    assert 0.77 < sick["ok"] / 5000 < 0.83
    full = Counter(
        pool.choose([pool.Candidate("free", 50, 1.0), pool.Candidate("full", -3, 1.0)], rng)
        for _ in range(2000)
    )
    assert full["full"] < 10


def test_remaining_capacity_counts_limits_age_and_backlog() -> None:
    """Room is the tighter of the hour and the age-based day limit, minus the backlog."""
    cfg = SendConfig()
    new, old = NOW - 86400, NOW - 100 * 86400
    assert pool.remaining(cfg, new, NOW, sent_hour=10, sent_day=450, backlog=5) == 45
    assert pool.remaining(cfg, old, NOW, sent_hour=10, sent_day=450, backlog=5) == 485
    unpaced = SendConfig(pacing=False)
    assert pool.remaining(unpaced, new, NOW, sent_hour=10, sent_day=450, backlog=5) == (
        pool.UNPACED - 5
    )
    assert pool.health(0) == 1.0 and pool.health(3) == 0.25


async def test_auto_spreads_over_connected_sessions_by_backlog(env: Env) -> None:
    """Pool messages go only to connected sessions, spread roughly evenly when they are alike."""
    pages = {n: FakePage() for n in ("a", "b", "c")}
    for p in pages.values():
        p.gate = asyncio.Event()  # hold sends: the backlog builds up
    for n, p in pages.items():
        env.manager.add(n, p)
    env.manager.add("off", None)
    async with env.messaging(seed=5) as ms:
        picks: Counter[str | None] = Counter()
        for i in range(150):
            to = f"1555{i:07d}@c.us"
            picks[name := await ms.pick_session(to)] += 1
            await ms.enqueue(replace(item(f"m{i}", session=name), from_spec="auto", chat_id=to))
        for p in pages.values():
            p.gate.set()  # type: ignore[union-attr]
        await until(lambda: sum(len(p.sent) for p in pages.values()) == 150)
    assert set(picks) == {"a", "b", "c"} and min(picks.values()) > 30, picks
    sent = Counter({n: len(p.sent) for n, p in pages.items()})
    assert min(sent.values()) > 30, sent


async def test_reply_sticks_to_the_session_the_contact_talked_to(env: Env) -> None:
    """After the contact wrote to `b`, `auto` picks `b`; when `b` is down, another one."""
    for n in ("a", "b", "c"):
        env.manager.add(n, FakePage())
    report = DriverReport(kind="message", data={"wa_id": "x1", "chat_id": BOB, "body": "hey"})
    async with env.messaging() as ms:
        await ms.on_report("b", report)
        assert {await ms.pick_session(BOB) for _ in range(20)} == {"b"}
        env.manager.runners["b"].state = SessionState.BACKOFF
        assert "b" not in {await ms.pick_session(BOB) for _ in range(20)}


async def test_a_burst_to_one_contact_stays_on_one_number(env: Env) -> None:
    """Before anything is sent, later messages to the same contact follow the first one's session."""
    for n in ("a", "b", "c"):
        page = env.manager.add(n, FakePage())
        assert page is not None
        page.gate = asyncio.Event()
    async with env.messaging(seed=2) as ms:
        first = await ms.pick_session(BOB)
        await ms.enqueue(item("one", session=first))
        assert {await ms.pick_session(BOB) for _ in range(10)} == {first}


async def test_logged_out_session_hands_back_only_its_auto_messages(env: Env) -> None:
    """On logout, queued `auto` messages go to the others; `--from a` ones and the one being
    sent stay with `a` (only its page can tell whether that one went out)."""
    pa = env.manager.add("a", FakePage())
    pb = FakePage()
    assert pa is not None
    pa.gate = asyncio.Event()
    env.manager.add("b", None)
    async with env.messaging() as ms:
        auto = [
            await ms.enqueue(replace(item(f"auto{i}", session="a"), from_spec="auto"))
            for i in range(5)
        ]
        pinned = await ms.enqueue(item("pinned", session="a"))
        await until(lambda: ms.senders["a"].busy)  # auto0 is at the page
        env.manager.add("b", pb)
        env.manager.runners["a"].state = SessionState.LOGGED_OUT
        env.bus.publish("state", session="a", **{"from": "connected", "to": "logged_out"})
        env.bus.publish("state", session="b", **{"from": "syncing", "to": "connected"})
        await until(lambda: len(pb.sent) == 4)
        pa.failures = [BrowserError("page closed")]
        pa.gate.set()  # the cut-off send fails: it stays `sending`, with its page id
        await until(lambda: _retried(env, auto[0].id))
    assert pb.bodies() == [f"auto{i}" for i in range(1, 5)] and pa.sent == []
    first = await env.repo.get(auto[0].id)
    assert first.session == "a" and first.state == "sending" and first.wa_id
    still = await env.repo.get(pinned.id)
    assert still.session == "a" and still.state == "queued"


async def _retried(env: Env, mid: str) -> bool:
    return bool((await env.repo.get(mid)).attempts == 1)


async def test_deleted_session_fails_its_pinned_messages(env: Env) -> None:
    """Deleting a session fails the messages only it could send, with the reason."""
    env.manager.add("a", None)
    async with env.messaging() as ms:
        msg = await ms.enqueue(item("orphan", session="a"))
        env.bus.publish("deleted", session="a")
        await reaches(env, msg.id, "failed")
    assert (await env.repo.get(msg.id)).last_error == "session a was deleted"
