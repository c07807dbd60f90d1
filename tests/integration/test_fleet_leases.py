"""Leases against a real PostgreSQL: claims by headroom, expiry and takeover by another host,
fencing tokens in the caller's transaction, moves and drains, the local deadline that stops a
session before its lease can expire, and LISTEN/NOTIFY wake-ups. Two or three "hosts" are
keepers in this one test process, each with its own pool on the same database."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.waiting import eventually_async
from wasupd.errors import StaleLease, StoreError
from wasupd.fleet.keeper import STOP_SHARE, HostSpec, LeaseKeeper
from wasupd.store.db import Database, open_database
from wasupd.store.fleet import FleetRepo, fence
from wasupd.store.notify import OUTBOX, Listener, notify
from wasupd.store.sessions import SessionRepo

TTL = 3.0  # seconds: short, so expiry is quick to see; renewals every 0.5 s
BIG, SMALL = 3000, 2000  # MiB of headroom with no session (each takes SESSION_MIB)


@dataclass
class Host:
    """A keeper with a record of what it was told to start and stop."""

    name: str
    db: Database
    keeper: LeaseKeeper = field(init=False)
    started: list[str] = field(default_factory=list)
    stopped: list[tuple[str, str, float]] = field(default_factory=list)  # session, why, at
    task: asyncio.Task[None] | None = None

    async def run_here(self, session: str) -> None:
        self.started.append(session)

    async def stop_here(self, session: str, reason: str) -> None:
        self.stopped.append((session, reason, time.time()))

    async def refresh(self) -> None:
        pass


@contextlib.asynccontextmanager
async def fleet(
    url: str, tmp_path: Path, mib: dict[str, int], *, max_sessions: int = 10
) -> AsyncIterator[dict[str, Host]]:
    """Keepers named as `mib`'s keys, each with that much headroom, running until the end."""
    hosts: dict[str, Host] = {}
    try:
        for name, headroom in mib.items():
            db = await open_database(tmp_path / "unused.db", url)
            host = Host(name, db)
            spec = HostSpec(host_id=name, max_sessions=max_sessions, version="test")
            host.keeper = LeaseKeeper(
                FleetRepo(db), spec, host, ttl=TTL, headroom=room(host, headroom)
            )
            host.task = asyncio.create_task(host.keeper.run())
            hosts[name] = host
        yield hosts
    finally:
        for host in hosts.values():
            await stop(host)
            await host.db.close()


def room(host: Host, mib: int) -> Callable[[], int]:
    """The headroom a host measures; constant, as right after its claims (their browsers
    still starting): placement itself counts the sessions it claimed since."""
    return lambda: mib


async def stop(host: Host) -> None:
    """Cancel a keeper as a killed host would stop: nothing released."""
    if host.task is not None:
        host.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await host.task
        host.task = None


async def sessions(db: Database, names: list[str]) -> None:
    """Sessions that should run (no lease yet)."""
    repo = SessionRepo(db)
    for name in names:
        await repo.create(name, phone=None, options={}, now=time.time())
        await repo.set_desired(name, "running")


async def owners(db: Database) -> dict[str, str]:
    return await FleetRepo(db).owners()


async def until_owned(
    db: Database, ok: Callable[[dict[str, str]], bool], what: str
) -> dict[str, str]:
    result: dict[str, str] = await eventually_async(lambda: owners(db), 20, what, ok=ok)
    return result


async def test_fleet_needs_postgresql(tmp_path: Path) -> None:
    """Over SQLite a fleet is refused, saying what to set."""
    async with await open_database(tmp_path / "w.db") as db:
        with pytest.raises(StoreError, match=r"\[store\] url"):
            FleetRepo(db)


async def test_sessions_spread_by_headroom(postgres_db: str, tmp_path: Path) -> None:
    """Six unowned sessions over a host with 3000 MiB of headroom and one with 2000: each in
    turn goes to the host with the most room left (400 MiB a session), so big takes four
    (3000, 2600, 2200, then 1800 after small's 2000), small two; none is claimed twice."""
    async with fleet(postgres_db, tmp_path, {"big": BIG, "small": SMALL}) as hosts:
        repo = FleetRepo(hosts["big"].db)
        await eventually_async(repo.hosts, 10, "both hosts registered", ok=lambda h: len(h) == 2)
        await sessions(hosts["big"].db, [f"s{i}" for i in range(6)])
        got = await until_owned(hosts["big"].db, lambda o: len(o) == 6, "six sessions owned")
        counts = {h: list(got.values()).count(h) for h in hosts}
        assert counts == {"big": 4, "small": 2}
        assert sorted(hosts["big"].started + hosts["small"].started) == sorted(got)


async def test_a_dead_hosts_sessions_move_after_the_lease(postgres_db: str, tmp_path: Path) -> None:
    """A host that stops renewing (killed) keeps its sessions until the lease expires by the
    database clock; then the other host claims them with a larger token, and the dead host's
    token is refused by the fence inside a transaction (which rolls back)."""
    async with fleet(postgres_db, tmp_path, {"a": BIG}) as hosts:
        db = hosts["a"].db
        await sessions(db, ["s1"])
        await until_owned(db, lambda o: o.get("s1") == "a", "a owning s1")
        old = hosts["a"].keeper.token("s1")
        assert old is not None
        await stop(hosts["a"])  # killed: no release, no renewal
        killed_at = time.monotonic()
        async with fleet(postgres_db, tmp_path, {"b": BIG}) as more:
            await until_owned(db, lambda o: o.get("s1") == "b", "b taking s1 over")
            assert time.monotonic() - killed_at >= TTL * (1 - 1 / 6) - 0.2  # not before expiry
            new = more["b"].keeper.token("s1")
            assert new is not None and new > old
            async with db.transaction() as tx:
                await fence(tx, "s1", "b", new)  # the owner passes
            with pytest.raises(StaleLease, match="b owns it now"):
                async with db.transaction() as tx:
                    await tx.execute("UPDATE sessions SET reason = 'stale write' WHERE name = 's1'")
                    await fence(tx, "s1", "a", old)
            row = await db.fetchone("SELECT reason FROM sessions WHERE name = 's1'")
            assert row is not None and row["reason"] != "stale write"  # rolled back


async def test_unreachable_database_stops_the_session_before_the_lease_ends(
    postgres_db: str, tmp_path: Path
) -> None:
    """A host whose database calls fail stops its session at its local deadline, while the
    lease still stands by the database clock (nobody else can have claimed it yet)."""
    async with fleet(postgres_db, tmp_path, {"a": BIG}) as hosts:
        host = hosts["a"]
        await sessions(host.db, ["s1"])
        await until_owned(host.db, lambda o: o.get("s1") == "a", "a owning s1")

        async def unreachable(*args: object, **kwargs: object) -> None:
            raise StoreError("connection refused (simulated)")

        repo = host.keeper.repo
        repo.renew = unreachable  # type: ignore[method-assign,assignment]
        repo.heartbeat = unreachable  # type: ignore[method-assign]
        await eventually_async(lambda: host.stopped, 10, "a to stop s1")
        (session, why, at) = host.stopped[0]
        assert session == "s1" and "no lease renewal" in why
        lease = await host.db.fetchone("SELECT expires_at FROM leases WHERE session = 's1'")
        assert lease is not None
        assert at < float(lease["expires_at"])  # stopped while the lease still stood
        assert float(lease["expires_at"]) - at >= TTL * (1 - STOP_SHARE) - TTL / 6 - 0.5


async def test_move_hands_over_after_the_stop(postgres_db: str, tmp_path: Path) -> None:
    """`move` to another host: the owner stops the session, then releases it, and the target
    claims it at once (no expiry wait) with a larger token."""
    async with fleet(postgres_db, tmp_path, {"a": BIG, "b": SMALL}) as hosts:
        db = hosts["a"].db
        await sessions(db, ["s1"])
        await until_owned(db, lambda o: o.get("s1") == "a", "a owning s1")
        old = hosts["a"].keeper.token("s1")
        assert await FleetRepo(db).move("s1", "b")
        asked = time.monotonic()
        await until_owned(db, lambda o: o.get("s1") == "b", "b owning s1")
        assert time.monotonic() - asked < TTL  # released, not expired
        assert [(s, why) for s, why, _ in hosts["a"].stopped] == [("s1", "moving to b")]
        token = hosts["b"].keeper.token("s1")
        assert old is not None and token is not None and token > old
        assert hosts["b"].started == ["s1"]


async def test_drain_moves_every_session_away(postgres_db: str, tmp_path: Path) -> None:
    """A draining host gives all its sessions away and claims none; back in service, it
    claims again."""
    async with fleet(postgres_db, tmp_path, {"a": BIG, "b": SMALL}) as hosts:
        db = hosts["a"].db
        await sessions(db, ["s1", "s2", "s3"])
        await until_owned(db, lambda o: list(o.values()).count("a") == 3, "a owning all three")
        assert await FleetRepo(db).set_draining("a", True)
        await until_owned(db, lambda o: o == {f"s{i}": "b" for i in (1, 2, 3)}, "b owning all")
        assert sorted(s for s, _, _ in hosts["a"].stopped) == ["s1", "s2", "s3"]
        assert not await FleetRepo(db).set_draining("nobody", True)
        await sessions(db, ["s4"])
        await until_owned(db, lambda o: o.get("s4") == "b", "s4 on b while a drains")


async def test_notify_wakes_a_listener_on_commit_only(postgres_db: str, tmp_path: Path) -> None:
    """NOTIFY inside a transaction reaches another connection's LISTEN at commit, not at all
    after a rollback."""
    async with (
        await open_database(tmp_path / "unused.db", postgres_db) as db,
        Listener(postgres_db, OUTBOX) as heard,
    ):
        with contextlib.suppress(RuntimeError):
            async with db.transaction() as tx:
                await notify(tx, OUTBOX, "rolled back")
                raise RuntimeError("abort")
        assert await heard.wait(0.3) == []
        async with db.transaction() as tx:
            await notify(tx, OUTBOX, "s1")
        assert await heard.wait(5) == ["s1"]
