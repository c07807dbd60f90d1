"""Campaigns: one text to many recipients, spread across numbers and the day, exactly once.

Life of a campaign: `draft` (recipients being added and checked) -> `scheduling` (being
queued; continued at the next start after a crash) -> `running` <-> `paused` -> `finished`,
or `cancelled`. Each recipient becomes one outbox message with the idempotency key
`campaign:<name>:<recipient>` and `not_before` = its planned time; the senders and their
pacing do the rest. A number that is logged out or fails hands its queued recipients to the
campaign's other numbers, once (a recipient handed over is never handed over again), unless
the campaign is pinned.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable
from typing import Any

import structlog

from wasupd.campaigns import plan as planner
from wasupd.campaigns.rows import check_columns, check_row, fields, render
from wasupd.config import Config
from wasupd.errors import InvalidArgument, InvalidState, SessionNotFound
from wasupd.events import EventBus
from wasupd.loops import keep_running
from wasupd.messaging.service import Messaging
from wasupd.messaging.webhooks import Webhooks
from wasupd.store.campaigns import Assignment, Campaign, CampaignRepo, Row
from wasupd.store.messages import MessageRepo, NewMessage
from wasupd.supervision.states import SessionState

log = structlog.get_logger("wasupd.campaigns")

BATCH = 2000  # recipients per transaction while queueing: memory stays flat at any size
CHECK_EVERY = 1.0  # seconds between looks for finished campaigns (only after outbox events)
DROPPED = (SessionState.LOGGED_OUT, SessionState.FAILED)
LIVE = ("scheduling", "running", "paused")


class Campaigns:
    """Creates, plans, queues and controls campaigns; lives inside `async with`."""

    def __init__(
        self,
        *,
        config: Callable[[], Config],
        repo: CampaignRepo,
        messages: MessageRepo,
        messaging: Messaging,
        bus: EventBus,
        webhooks: Webhooks | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config, self.repo, self.messages = config, repo, messages
        self.messaging, self.bus, self.webhooks, self.clock = messaging, bus, webhooks, clock
        self._group = asyncio.TaskGroup()
        self._tasks: list[asyncio.Task[None]] = []
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()  # one campaign change at a time (plans read the store)

    async def __aenter__(self) -> Campaigns:
        await self._group.__aenter__()
        sub = self.bus.subscribe(types=("state", "outbox"))
        self._tasks = [
            self._group.create_task(keep_running("campaign_follower", lambda: self._follow(sub))),
            self._group.create_task(keep_running("campaign_finisher", self._finisher)),
            self._group.create_task(self._continue_interrupted()),
        ]
        self._dirty.set()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await self._group.__aexit__(None, None, None)

    # -- creating --------------------------------------------------------------------------

    async def create(self, **p: Any) -> Campaign:
        """A draft: the text, the numbers, the window and times are checked now. With a file
        (`media`, already in the media store) the text is its caption and may be empty."""
        media = p.get("media")
        used = fields(p["text"]) if p["text"] or media is None else []
        check_columns(p["columns"], used)
        window = p["window"] or ""
        if window:
            planner.window_minutes(window)
        for name in p["numbers"]:
            if self.messaging.sessions.state_of(name) is None:
                raise SessionNotFound(
                    f"--from names no session {name!r} (see `wasupctl session list`)"
                )
        if p["until"] is not None and p["until"] <= (p["start"] or self.clock()):
            raise InvalidArgument("--until must be after the start time")
        return await self.repo.create_draft(
            name=p["name"],
            body=p["text"],
            numbers=p["numbers"],
            pinned=p["pin"],
            send_window=window,
            start_at=p["start"],
            until=p["until"],
            media=dataclasses.asdict(media) if media is not None else None,
        )

    async def add(self, name: str, rows: list[list[Any]]) -> list[str]:
        """Check and store a batch of a draft's rows ([line, {column: value}]); the errors."""
        c = await self._draft(name)
        used = fields(c.body) if c.body or c.media is None else []
        good: list[Row] = []
        errors: list[str] = []
        for line, values in rows:
            checked = check_row(int(line), values, used)
            if isinstance(checked, str):
                errors.append(checked)
            else:
                good.append(checked)
        dups = await self.repo.add_rows(c.id, good)
        errors += [f"line {line}: duplicate of line {first}" for line, first in dups]
        if errors:
            await self.repo.update(c.id, errors=c.errors + len(errors))
        return [str(e) for e in errors]

    async def discard(self, name: str) -> None:
        """Forget a draft (its CSV had errors): nothing was queued."""
        c = await self._draft(name)
        await self.repo.delete(c.id)

    async def _draft(self, name: str) -> Campaign:
        c = await self.repo.get(name)
        if c.state != "draft":
            raise InvalidState(f"campaign {name!r} was already started ({c.state})")
        return c

    # -- planning and starting -------------------------------------------------------------

    async def start(self, name: str, dry_run: bool) -> dict[str, Any]:
        """Plan the draft and, unless `dry_run`, queue every recipient; returns the plan."""
        async with self._lock:
            c = await self._draft(name)
            if c.errors:
                await self.repo.delete(c.id)
                raise InvalidArgument(f"the recipients had {c.errors} error(s); nothing was queued")
            try:
                summary = await self._plan(c)
            except BaseException:
                await self.repo.delete(c.id)
                raise
            if dry_run:
                await self.repo.delete(c.id)
                return summary
            await self.repo.update(c.id, state="scheduling", plan=summary)
        await self._queue_all(await self.repo.get(name))
        return summary

    async def _numbers(self, c: Campaign, now: float) -> list[planner.Number]:
        names = c.numbers or [
            n
            for n in self.messaging.sessions.names()
            if self.messaging.sessions.state_of(n) is SessionState.CONNECTED
        ]
        if not names:
            raise InvalidState("no session is connected for --from auto; name them with --from")
        load = await self.messages.load(list(names), now)
        return [
            planner.number_for(
                n,
                self.messaging.send_config(n),
                linked_at=self.messaging.linked_at(n),
                now=now,
                sent_day=load[n][1],
                health=self.messaging.health(n),
                window=c.send_window or self.messaging.send_config(n).window,
            )
            for n in names
        ]

    async def _plan(self, c: Campaign) -> dict[str, Any]:
        now = self.clock()
        start = max(c.start_at or now, now)
        numbers = await self._numbers(c, now)
        opted_out = await self.repo.skip_suppressed(c.id)
        sticky = await self.repo.sticky_counts(c.id, [n.name for n in numbers])
        total = sum(sticky.values())
        if total == 0:
            raise InvalidArgument("the campaign has no recipients to send to")
        share = planner.shares(numbers, total, {k: v for k, v in sticky.items() if k})
        rng = random.Random(c.name)
        per: dict[str, planner.NumberPlan] = {}
        for n in numbers:
            per[n.name] = np = planner.NumberPlan()
            for at in planner.slots(n, share[n.name], start, rng):
                np.add(at, start)
        lasts = [p.last for p in per.values() if p.last is not None]
        if c.until is not None and lasts and max(lasts) > c.until:
            raise InvalidArgument(planner.shortfall(numbers, total, start, c.until))
        firsts = [p.first for p in per.values() if p.first is not None]
        return {
            "campaign": c.name,
            "recipients": total,
            "opted_out": opted_out,
            "start": start,
            "first": min(firsts) if firsts else None,
            "last": max(lasts) if lasts else None,
            "days": max((len(p.days) for p in per.values()), default=0),
            "numbers": {
                k: {**p.as_dict(), "capacity": next(n.capacity for n in numbers if n.name == k)}
                for k, p in per.items()
            },
            "shares": share,
            "spec": {
                n.name: {
                    "capacity": n.capacity,
                    "today": n.today,
                    "spacing": n.spacing,
                    "window": n.window,
                }
                for n in numbers
            },
        }

    async def _queue_all(self, c: Campaign) -> None:
        """Queue the planned recipients in batches; continued after a crash from what is queued
        (the idempotency keys make a repeated batch harmless)."""
        spec, share, start = c.plan["spec"], c.plan["shares"], float(c.plan["start"])
        done = await self.repo.queued_per_session(c.id)
        rng = random.Random(f"{c.name}:{sum(done.values())}")
        gens = {}
        for name, s in spec.items():
            number = planner.Number(name=name, **s)
            gens[name] = planner.slots(number, share[name], start, rng)
            for _ in range(done.get(name, 0)):
                next(gens[name], None)
        left = {n: share[n] - done.get(n, 0) for n in share}
        after = 0
        while batch := await self.repo.pending(c.id, list(spec), after, BATCH):
            out = []
            for p in batch:
                name = (
                    p.sticky
                    if p.sticky and left.get(p.sticky, 0) > 0
                    else self._emptiest(left, share)
                )
                left[name] -= 1
                at = next(gens[name], start)
                out.append(
                    Assignment(
                        p.recipient, name, at, render(c.body, p.vars, p.recipient.split("@")[0])
                    )
                )
            await self.repo.queue(c, out)
            after = batch[-1].line
        await self.repo.update(c.id, state="running")
        await self._event(c.name, "started")
        self.messaging.wake(None)

    @staticmethod
    def _emptiest(left: dict[str, int], share: dict[str, int]) -> str:
        # The number with the largest part of its share still to fill: an even interleave.
        return max(sorted(left), key=lambda n: left[n] / share[n] if share[n] else -1.0)

    async def _continue_interrupted(self) -> None:
        for c in await self.repo.listing(("scheduling",)):
            log.info("campaign_queueing_continued", campaign=c.name)
            await self._queue_all(c)

    # -- control ---------------------------------------------------------------------------

    async def pause(self, name: str) -> Campaign:
        """Hold the campaign's queued messages (those already being sent finish)."""
        async with self._lock:
            c = await self._in(name, ("running",), "pause")
            await self.repo.hold(c.id, f"campaign {name} is paused")
            await self.repo.update(c.id, state="paused", paused_at=self.clock())
        await self._event(name, "paused")
        return await self.repo.get(name)

    async def resume(self, name: str) -> Campaign:
        """Continue a paused campaign; the rest of its schedule moves on by the pause."""
        async with self._lock:
            c = await self._in(name, ("paused",), "resume")
            shift = self.clock() - (c.paused_at or self.clock())
            await self.repo.release(c.id, shift, f"campaign {name}: planned")
            await self.repo.update(c.id, state="running", paused_at=None)
        await self._event(name, "resumed")
        self.messaging.wake(None)
        self._dirty.set()
        return await self.repo.get(name)

    async def cancel(self, name: str) -> Campaign:
        """Cancel every queued message of the campaign."""
        async with self._lock:
            c = await self._in(name, LIVE, "cancel")
            count = await self.repo.cancel(c.id)
            await self.repo.update(c.id, state="cancelled")
        await self._event(name, "cancelled", cancelled=count)
        return await self.repo.get(name)

    async def _in(self, name: str, states: tuple[str, ...], verb: str) -> Campaign:
        c = await self.repo.get(name)
        if c.state not in states:
            raise InvalidState(f"cannot {verb} campaign {name!r}: it is {c.state}")
        return c

    async def show(self, name: str) -> dict[str, Any]:
        """The campaign with counts by number and state, and its estimated finish."""
        c = await self.repo.get(name)
        counts: dict[str, dict[str, int]] = {}
        totals: dict[str, int] = {}
        for session, state, n, replied in await self.repo.counts(c.id):
            row = counts.setdefault(session or "-", {})
            row[state] = row.get(state, 0) + n
            row["replied"] = row.get("replied", 0) + replied
            totals[state] = totals.get(state, 0) + n
            totals["replied"] = totals.get("replied", 0) + replied
        out = c.as_dict()
        out.pop("plan")
        out.update(
            numbers_used=counts,
            totals=totals,
            finish=await self.repo.last_planned(c.id),
            planned=c.plan.get("numbers", {}),
        )
        return out

    # -- opt-outs --------------------------------------------------------------------------

    async def opt_out(self, chat_id: str, source: str) -> bool:
        """Put a contact on the suppression list, cancelling its queued campaign messages."""
        new, touched = await self.repo.opt_out(chat_id, source)
        for _, mid in touched:
            if mid:
                self.bus.publish(
                    "outbox",
                    id=mid,
                    session=None,
                    state="cancelled",
                    reason="the contact opted out",
                )
        if new:
            log.info("contact_opted_out", chat_id=chat_id, source=source)
        return new

    async def on_inbound(self, session: str, row: dict[str, Any]) -> None:
        """An inbound message: an opt-out keyword suppresses the contact (and confirms once,
        when configured); anything else after a campaign message marks the recipient replied."""
        chat, body = str(row.get("chat_id") or ""), str(row.get("body") or "")
        cfg = self.config().optout
        if chat.endswith("@g.us"):
            return
        # A migrated contact writes from its LID; campaigns name recipients by number. Every id
        # known for the person counts (the inbox row carries both when WhatsApp Web knows them).
        ids = list(dict.fromkeys(i for i in (row.get("sender_pn"), row.get("sender_lid")) if i))
        ids = [str(i) for i in ids] or [chat]
        if body.strip().upper() in {k.strip().upper() for k in cfg.keywords}:
            added = [await self.opt_out(i, f"keyword from {session}") for i in ids]
            if any(added) and cfg.confirmation:
                await self.messaging.enqueue(
                    NewMessage(
                        session=session,
                        from_spec=session,
                        chat_id=chat,
                        body=cfg.confirmation,
                        idempotency_key=f"optout-confirmation:{chat}",
                    )
                )
            return
        for person in ids:
            for cid in await self.repo.mark_replied(session, person):
                c = await self.repo.by_id(cid)
                self.bus.publish("campaign", campaign=c.name, event="replied", chat_id=person)

    # -- following the outbox and the sessions ---------------------------------------------

    async def _follow(self, sub: Any) -> None:
        async for event in sub:
            if event["type"] == "outbox":
                self._dirty.set()
            elif event.get("to") in (s.value for s in DROPPED):
                await self._hand_over(str(event.get("session")))

    async def _finisher(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            for c in await self.repo.listing(("running",)):
                if await self.repo.waiting(c.id) == 0:
                    await self.repo.update(c.id, state="finished")
                    await self._event(c.name, "finished")
            await asyncio.sleep(CHECK_EVERY)  # batches the outbox events of a busy second

    async def _hand_over(self, dropped: str) -> None:
        """A number left: its queued, not yet handed-over recipients go to the others."""
        async with self._lock:
            for c in await self.repo.listing(("running", "paused")):
                spec = c.plan.get("spec", {})
                if c.pinned or dropped not in spec:
                    continue
                others = [
                    planner.Number(name=n, **s)
                    for n, s in spec.items()
                    if n != dropped and self.messaging.sessions.state_of(n) not in DROPPED
                ]
                todo = await self.repo.handover_candidates(c.id, dropped)
                if not others or not todo:
                    continue
                await self._move(c, others, todo)

    async def _move(
        self, c: Campaign, others: list[planner.Number], todo: list[tuple[str, str]]
    ) -> None:
        share = planner.shares(others, len(todo), {})
        now, rng = self.clock(), random.Random()
        lasts = await self.repo.last_planned_per_session(c.id)
        gens = {
            n.name: planner.slots(n, share[n.name], max(now, lasts.get(n.name, now)), rng)
            for n in others
        }
        order = [n for n in sorted(share) for _ in range(share[n])]
        moves = [
            (r, mid, name, next(gens[name], now))
            for (r, mid), name in zip(todo, order, strict=True)
        ]
        moved = await self.repo.hand_over(c.id, moves)
        if c.state == "paused":
            await self.repo.hold(c.id, f"campaign {c.name} is paused")
        log.info("campaign_handed_over", campaign=c.name, moved=moved, to=sorted(share))
        await self._event(c.name, "handed_over", moved=moved)
        self.messaging.wake(None)

    async def _event(self, name: str, what: str, **data: Any) -> None:
        """A `campaign` event on the bus and to webhooks (started, paused, resumed, ...)."""
        self.bus.publish("campaign", campaign=name, event=what, **data)
        if self.webhooks is not None:
            await self.webhooks.enqueue("campaign", {"campaign": name, "event": what, **data})
