"""`host.*` and `session.move`: the fleet of hosts on one PostgreSQL (docs/fleet.md)."""

from __future__ import annotations

from typing import Any

from wasupd.errors import InvalidArgument, InvalidState
from wasupd.rpc.server import Context
from wasupd.store.fleet import FleetRepo, HostRecord
from wasupd.store.sessions import SessionRepo


class FleetMethods:
    """List hosts, drain one, move a session; refused on a single host (SQLite)."""

    def __init__(self, *, fleet: FleetRepo | None, ttl: float, repo: SessionRepo) -> None:
        self.fleet, self.ttl, self.repo = fleet, ttl, repo

    def _repo(self) -> FleetRepo:
        if self.fleet is None:
            raise InvalidState(
                "this daemon is a single host (SQLite store): a fleet needs every host on one"
                ' PostgreSQL, [store] url = "postgresql://..." (docs/fleet.md)'
            )
        return self.fleet

    def _health(self, h: HostRecord) -> str:
        if h.age < self.ttl / 2:
            return "ok"
        return "late" if h.age < self.ttl else "expired"

    async def _host(self, host: str) -> HostRecord:
        found = {h.host_id: h for h in await self._repo().hosts()}
        if host not in found:
            known = ", ".join(sorted(found)) or "none yet"
            raise InvalidArgument(f"no host {host!r} in the fleet (hosts: {known})", host=host)
        return found[host]

    async def hosts(self, ctx: Context) -> list[dict[str, Any]]:
        """Every host of the fleet: capacity (max sessions, memory headroom in MiB), the
        sessions it holds leases on, its lease health (ok, late, expired: heartbeat age
        against the lease timeout), version, and whether it is draining."""
        return [
            {
                "host": h.host_id,
                "max_sessions": h.max_sessions,
                "headroom_mib": h.headroom_mib,
                "sessions": h.sessions,
                "lease": self._health(h),
                "heartbeat_age": round(h.age, 1),
                "version": h.version,
                "draining": h.draining,
            }
            for h in await self._repo().hosts()
        ]

    async def drain(self, ctx: Context, host: str, undo: bool = False) -> dict[str, Any]:
        """Move every session away from `host` (for maintenance) and let it claim none;
        `undo`: back in service."""
        await self._host(host)
        await self._repo().set_draining(host, not undo)
        return {"host": host, "draining": not undo}

    async def move(self, ctx: Context, name: str, to: str) -> dict[str, Any]:
        """Move a session to host `to`: its owner stops it (the profile sealed), then `to`
        starts it from that profile."""
        await self.repo.get(name)  # SessionNotFound for an unknown name
        target = await self._host(to)
        if target.draining or self._health(target) == "expired":
            why = "is draining" if target.draining else "is not renewing its leases"
            raise InvalidState(f"host {to} {why}: choose another (wasupctl host list)", host=to)
        repo = self._repo()
        owner = (await repo.owners()).get(name, "")
        await repo.ensure(name)
        await repo.move(name, to)
        return {"session": name, "from": owner, "to": to}
