"""This host's leases: claim up to capacity, renew, hand over, and stop in time.

Timing, for a lease of `ttl` seconds (`fleet.lease_timeout`, by the database clock):

- every `ttl / RENEW_PER_TTL` seconds the host heartbeats, renews what it holds, hands over
  what it was asked to give away (a move, a drain) and claims its share of unowned sessions;
- a renewal sent at local time t extends the leases to (database now) + ttl, which is later
  than t + ttl; the host's own deadline is t + ttl * STOP_SHARE. When no renewal succeeds by
  then (the database is unreachable, or this host was frozen), it stops every session it
  holds, so the browsers are gone while the leases still stand and nobody else can have
  claimed them yet. A lease found expired at a renewal is stopped at once, too.

The sessions themselves are reached through `FleetSessions`: start one here, stop one here
(and wait until its browser is gone and its profile sealed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from wasupd.errors import WasupError
from wasupd.fleet.placement import SESSION_MIB, Room, shares
from wasupd.store.db import Executor
from wasupd.store.fleet import FleetRepo, HostRecord, Lease, Request, fence

RENEW_PER_TTL = 6  # renewals per lease period: five can fail before the deadline
SETTLE_S = 30.0  # s after a claim when the session's browser shows in the memory measure
RELEASE_TIMEOUT = 5.0  # s for giving every lease back at shutdown
STOP_SHARE = 0.5  # the local deadline, as a share of the lease (the rest is time to stop)
log = structlog.get_logger("wasupd.fleet")


class FleetSessions(Protocol):
    """What the keeper needs of the sessions."""

    async def run_here(self, session: str) -> None:
        """This host holds `session`'s lease now: start it."""
        ...

    async def stop_here(self, session: str, reason: str) -> None:
        """Stop `session` here and return once its browser is gone (profile sealed)."""
        ...

    async def refresh(self) -> None:
        """Read again what other hosts changed (new sessions, desired states)."""
        ...

    async def perform(self, session: str, op: str, args: dict[str, Any]) -> None:
        """Carry out here what an operator on another host asked (restart, logout, delete);
        raises what went wrong (a WasupError's message is sent back to the asker)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class HostSpec:
    """Who this host is and how much it can take."""

    host_id: str
    max_sessions: int
    version: str
    session_mib: int = SESSION_MIB


class LeaseKeeper:
    """Holds this host's leases while `run()` runs; `token(session)` for fencing."""

    def __init__(
        self,
        repo: FleetRepo,
        me: HostSpec,
        sessions: FleetSessions,
        *,
        ttl: float,
        headroom: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.repo, self.me, self.sessions = repo, me, sessions
        self.ttl, self.headroom, self.clock = ttl, headroom, clock
        self.interval = ttl / RENEW_PER_TTL
        self.held: dict[str, Lease] = {}
        self.leaving: set[str] = set()  # handed over or lost: being stopped
        self.lost: set[str] = set()  # lost (expired, or no renewal in time): being stopped
        self.deadline = 0.0  # local monotonic time by which a renewal must have succeeded
        self.owners: dict[str, str] = {}  # session -> host, as of the last round
        self.since: dict[str, float] = {}  # session -> when this host took it (monotonic)
        self._tg: asyncio.TaskGroup | None = None
        self._doing: set[int] = set()  # requests from other hosts being carried out

    def token(self, session: str) -> int | None:
        """The fencing token this host holds for `session`, or None when it holds none."""
        lease = self.held.get(session)
        return lease.token if lease is not None and session not in self.leaving else None

    async def run(self) -> None:
        """Renew and claim, and watch the deadline, until cancelled (then the leases are
        left to expire or be released by `release_all`)."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tg.create_task(self._renewals())
            tg.create_task(self._watch_deadline())

    async def _renewals(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.interval * 2):
                    await self.step()
            except Exception as exc:  # the database is away: the deadline decides
                log.warning("lease_renew_failed", host=self.me.host_id, error=str(exc))
            await asyncio.sleep(self.interval)

    async def _watch_deadline(self) -> None:
        while True:
            left = self.deadline - self.clock()
            if left <= 0 and self._running():
                why = f"no lease renewal for {self.ttl * STOP_SHARE:g} s (database unreachable?)"
                for name in self._running():
                    self._lose(name, why)
            await asyncio.sleep(max(0.05, min(self.interval, left)))

    def _running(self) -> list[str]:
        return [name for name in self.held if name not in self.leaving]

    async def step(self) -> None:
        """One round: heartbeat, renew, hand over, claim."""
        sent = self.clock()
        await self.repo.heartbeat(
            self.me.host_id,
            max_sessions=self.me.max_sessions,
            headroom_mib=self.headroom(),
            sessions=self._settled(),
            version=self.me.version,
        )
        renewed = {
            lease.session: lease for lease in await self.repo.renew(self.me.host_id, self.ttl)
        }
        self.deadline = sent + self.ttl * STOP_SHARE
        for name in self._running():
            if name not in renewed:
                self._lose(name, "its lease expired before this host renewed it")
        self.held.update({name: lease for name, lease in renewed.items() if name in self.held})
        hosts = await self.repo.hosts()
        mine = next((h for h in hosts if h.host_id == self.me.host_id), None)
        for lease in renewed.values():
            if lease.session not in self.held:
                self.held[lease.session] = lease  # held from an earlier life of this host id
                self._spawn(self.sessions.run_here(lease.session))
            if mine is not None and mine.draining:
                self._hand_over(lease, "this host is draining")
            elif lease.target and lease.target != self.me.host_id:
                self._hand_over(lease, f"moving to {lease.target}")
            elif not lease.wanted:
                self._hand_over(lease, "stop requested")
        for request in await self.repo.asked_of(self.me.host_id):
            if request.id not in self._doing and request.session in self._running():
                self._doing.add(request.id)
                self._spawn(self._carry_out(request))
        await self.sessions.refresh()  # before claiming: a session created elsewhere
        if mine is not None and not mine.draining:
            await self._claim(hosts)
        self.owners = await self.repo.owners()

    def speaks_for(self, session: str) -> bool:
        """False while this host stops a session whose lease it lost: another host may run
        it already, so what happens to it here is written nowhere but this host's log."""
        return session not in self.lost

    def owner_of(self, session: str) -> str:
        """The host running `session` (as of the last round; this host at once for its own)."""
        if self.token(session) is not None:
            return self.me.host_id
        return self.owners.get(session, "")

    async def fence(self, tx: Executor, session: str) -> None:
        """In `tx`: this host still holds `session`'s lease (StaleLease otherwise)."""
        token = self.token(session)
        await fence(tx, session, self.me.host_id, -1 if token is None else token)

    async def _claim(self, hosts: list[HostRecord]) -> None:
        unowned, for_me = await self.repo.claimable(self.me.host_id, self.ttl)
        plan = shares(self._rooms(hosts), unowned - for_me, self.me.session_mib)
        room = max(0, self.me.max_sessions - len(self.held))
        n = min(room, plan.get(self.me.host_id, 0) + for_me)
        for lease in await self.repo.claim(self.me.host_id, n, self.ttl):
            self.held[lease.session] = lease
            self.since[lease.session] = self.clock()
            log.info(
                "lease_claimed", session=lease.session, token=lease.token, host=self.me.host_id
            )
            self._spawn(self.sessions.run_here(lease.session))

    async def _carry_out(self, request: Request) -> None:
        """Do what another host's operator asked, and answer (the error's text, or None)."""
        log.info(
            "fleet_request",
            session=request.session,
            op=request.op,
            asked_by=request.by,
            host=self.me.host_id,
        )
        error: str | None = None
        try:
            await self.sessions.perform(request.session, request.op, request.args)
        except WasupError as exc:
            error = exc.message
        except Exception as exc:
            log.exception("fleet_request_failed", session=request.session, op=request.op)
            error = f"internal error on {self.me.host_id} ({type(exc).__name__}); see its log"
        try:
            await self.repo.answer(request.id, error)
        finally:
            self._doing.discard(request.id)

    def _settled(self) -> int:
        """Held sessions whose memory the headroom measure shows (claimed SETTLE_S ago)."""
        now = self.clock()
        return sum(1 for name in self.held if now - self.since.get(name, now) >= SETTLE_S)

    def _rooms(self, hosts: list[HostRecord]) -> list[Room]:
        return [
            Room(
                host_id=h.host_id,
                free_slots=h.max_sessions - h.sessions,
                # Sessions the host's measure does not show yet (claimed since, or still
                # starting: a starting browser has allocated little) count against it.
                headroom_mib=h.headroom_mib
                - max(0, h.sessions - h.sessions_then) * self.me.session_mib,
                usable=h.age < self.ttl and not h.draining,
            )
            for h in hosts
        ]

    def _lose(self, name: str, why: str) -> None:
        """The lease is gone (or about to be): stop the session now; nothing to release."""
        self.leaving.add(name)
        self.lost.add(name)
        log.warning("lease_lost", session=name, host=self.me.host_id, reason=why)

        async def stop() -> None:
            try:
                await self.sessions.stop_here(name, f"lease lost: {why}")
            finally:
                self.held.pop(name, None)
                self.since.pop(name, None)
                self.leaving.discard(name)
                self.lost.discard(name)

        self._spawn(stop())

    def _hand_over(self, lease: Lease, why: str) -> None:
        """Stop the session (its profile sealed where the next host reads it), then release."""
        if lease.session in self.leaving:
            return
        self.leaving.add(lease.session)
        log.info("lease_handover", session=lease.session, host=self.me.host_id, reason=why)

        async def stop_then_release() -> None:
            try:
                await self.sessions.stop_here(lease.session, why)
                await self.repo.release(self.me.host_id, lease.session, lease.token)
                self.owners.pop(lease.session, None)  # no host runs it now
            finally:
                self.held.pop(lease.session, None)
                self.since.pop(lease.session, None)
                self.leaving.discard(lease.session)

        self._spawn(stop_then_release())

    async def release_all(self) -> None:
        """At shutdown, after every session stopped: give the leases back at once, so
        another host need not wait for them to expire."""
        # Bounded: with the database unreachable the leases simply expire, and the shutdown
        # must not wait for the pool's connection timeout once per lease.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(RELEASE_TIMEOUT):
                for lease in list(self.held.values()):
                    await self.repo.release(self.me.host_id, lease.session, lease.token)
        self.held.clear()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a start or a stop beside the renewals (a slow stop must not hold them up);
        its failure is logged, not fatal to the keeper."""
        assert self._tg is not None, "LeaseKeeper.run() is not running"

        async def guarded() -> None:
            try:
                await coro
            except Exception:
                log.exception("fleet_action_failed", host=self.me.host_id)

        self._tg.create_task(guarded())
