"""The fleet as the daemon runs it: the lease keeper and the cross-host wake-ups.

Built by the App only with a PostgreSQL store. `running()` keeps, in one TaskGroup, the
keeper's loops, a bridge that NOTIFYs the other hosts when this one queues a message (their
owner of that session sends it), and a listener that wakes this host's senders when another
host queued one. When it ends (daemon shutdown) the leases are released once the sessions
have stopped (`release_all`), so the next host need not wait for them to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import psutil
import structlog

from wasupd import __version__
from wasupd.config import Config
from wasupd.errors import Busy, InvalidState
from wasupd.events import EventBus
from wasupd.fleet.keeper import FleetSessions, HostSpec, LeaseKeeper
from wasupd.loops import keep_running
from wasupd.store.db import Database
from wasupd.store.fleet import FleetRepo
from wasupd.store.notify import OUTBOX, Listener, notify

log = structlog.get_logger("wasupd.fleet")
LISTEN_POLL = 5.0  # seconds: senders are also woken this often, should a NOTIFY be missed
ASK_POLL = 0.5  # s between looks at a request another host carries out
# s a request to another host may take, past the lease round that takes it up: a stop (a
# restart, a forced delete) is bounded by the browser's stop, well within this.
ASK_TIMEOUT = 90.0


def headroom(reserve_mib: int) -> Callable[[], int]:
    """This host's memory for more sessions: MemAvailable above the configured reserve."""
    return lambda: max(0, psutil.virtual_memory().available // (1 << 20) - reserve_mib)


class Fleet:
    """This host's part in the fleet: `keeper` (leases) and the wake-ups."""

    def __init__(
        self,
        *,
        config: Config,
        db: Database,
        sessions: FleetSessions,
        bus: EventBus,
        wake: Callable[[str | None], None],
    ) -> None:
        self.config, self.db, self.bus, self.wake = config, db, bus, wake
        self.repo = FleetRepo(db)
        spec = HostSpec(
            host_id=config.daemon.host_id,
            max_sessions=config.limits.max_sessions,
            version=__version__,
        )
        self.keeper = LeaseKeeper(
            self.repo,
            spec,
            sessions,
            ttl=config.fleet.lease_timeout,
            headroom=headroom(config.limits.host_memory_reserve_mib),
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Fleet]:
        """The keeper and the wake-ups run inside the block; cancelled when it ends."""
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self.keeper.run()),
                group.create_task(keep_running("fleet_notify", self._announce)),
                group.create_task(keep_running("fleet_listen", self._listen)),
            ]
            try:
                yield self
            finally:
                for task in tasks:
                    task.cancel()

    async def ask(self, session: str, op: str, args: dict[str, Any]) -> None:
        """Have the host that runs `session` do `op` (restart, logout, delete): it takes the
        request up at its next lease round. Returns once it was carried out; InvalidState
        with that host's words when it failed there; Busy when it was not taken up within
        ASK_TIMEOUT (the request is then withdrawn, never carried out late)."""
        owner = self.keeper.owner_of(session) or "its host"
        rid = await self.repo.ask(session, op, args, self.config.daemon.host_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ASK_TIMEOUT + self.keeper.interval
        while True:
            done, error = await self.repo.outcome(rid)
            if done:
                break
            if loop.time() >= deadline:
                await self.repo.withdraw(rid)
                raise Busy(
                    f"host {owner} did not carry out {op} of session {session!r} within"
                    f" {ASK_TIMEOUT + self.keeper.interval:.0f} s; is it up? (wasupctl host list)",
                    session=session,
                    host=owner,
                )
            await asyncio.sleep(ASK_POLL)
        if error:
            raise InvalidState(f"on host {owner}: {error}", session=session, host=owner)

    async def _announce(self) -> None:
        """A message queued here: tell every host (the session's owner sends it)."""
        sub = self.bus.subscribe(types=("outbox",))
        try:
            async for event in sub:
                if event.get("state") == "queued":
                    await notify(self.db, OUTBOX, str(event.get("session") or ""))
        finally:
            sub.close()

    async def _listen(self) -> None:
        """Another host queued a message: wake this host's sender of that session (or all,
        for pool work); every LISTEN_POLL s anyway."""
        async with Listener(self.config.store.url, OUTBOX) as heard:
            while True:
                payloads = await heard.wait(LISTEN_POLL)
                for payload in payloads or [""]:
                    self.wake(payload or None)
