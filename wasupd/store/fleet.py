"""The fleet's tables: hosts and the leases that say which host runs which session.

PostgreSQL only: a fleet is several daemons on one PostgreSQL (`[store] url`). The tables are
made by the one migration list (`store/schema.py`, step 7) on both backends, since their DDL
is plain, but nothing reads or writes them on SQLite: a single host owns every session and
needs no lease. `FleetRepo` refuses to be built over SQLite.

Every time is the DATABASE's clock (`now()`), never a host's: a lease expires when the
database says so, whatever the hosts' clocks say. A lease's `token` grows by one on every new
claim (a renewal keeps it), so a host that lost a lease holds a smaller token than the new
owner; `fence()` checks a token inside the caller's transaction and refuses a stale one.
Claims take rows with `FOR UPDATE SKIP LOCKED`: hosts that claim at once never wait for each
other and never claim the same session.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from wasupd.errors import StaleLease, StoreError
from wasupd.store.db import Database, Executor, Row

# Every "now" below is the database clock as a unix time, `extract(epoch FROM now())` (the
# `REAL` columns hold unix times, as elsewhere in the store).


@dataclass(frozen=True, slots=True, kw_only=True)
class HostRecord:
    """A host as the fleet sees it; `age` is seconds since its last heartbeat (DB clock).
    `headroom_mib` is what it measured at that heartbeat, when it held `sessions_then`."""

    host_id: str
    max_sessions: int
    headroom_mib: int
    sessions_then: int
    version: str
    draining: bool
    age: float
    sessions: int

    @classmethod
    def of(cls, row: Row) -> HostRecord:
        return cls(
            host_id=row["host_id"],
            max_sessions=int(row["max_sessions"]),
            headroom_mib=int(row["headroom_mib"]),
            sessions_then=int(row["sessions_then"]),
            version=row["version"],
            draining=bool(row["draining"]),
            age=float(row["age"]),
            sessions=int(row["sessions"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """A lease this host holds: its fencing token, when the database ends it, and the host
    an operator asked to move it to (`target`, '' for none)."""

    session: str
    token: int
    expires_at: float
    target: str = ""
    wanted: bool = True  # the session's desired state is still `running`

    @classmethod
    def of(cls, row: Row) -> Lease:
        return cls(
            session=row["session"],
            token=int(row["token"]),
            expires_at=float(row["expires_at"]),
            target=row["target"] or "",
            wanted="desired" not in row.keys() or row["desired"] == "running",  # noqa: SIM118 - a Row iterates its values
        )


_HOSTS = """
    SELECT h.host_id, h.max_sessions, h.headroom_mib, h.sessions_then, h.version, h.draining,
           extract(epoch FROM now()) - h.heartbeat_at AS age,
           (SELECT count(*) FROM leases l
             WHERE l.host_id = h.host_id AND l.expires_at > extract(epoch FROM now())) AS sessions
      FROM hosts h ORDER BY h.host_id
"""
# Unowned (released, never claimed, or expired) leases of sessions that should run, which
# `host` may take: not meant for another host by a move, unless that host is gone.
_CLAIM = """
    UPDATE leases SET host_id = :host, token = token + 1, expires_at = extract(epoch FROM now()) + :ttl,
                      target = NULL, claimed_at = extract(epoch FROM now())
     WHERE session IN (
        SELECT l.session FROM leases l JOIN sessions s ON s.name = l.session
         WHERE s.desired = 'running'
           AND (l.host_id IS NULL OR l.expires_at <= extract(epoch FROM now()))
           AND (l.target IS NULL OR l.target = :host
                OR NOT EXISTS (SELECT 1 FROM hosts h WHERE h.host_id = l.target
                                AND h.heartbeat_at > extract(epoch FROM now()) - :ttl AND h.draining = 0))
         ORDER BY (l.target = :host) DESC NULLS LAST, l.session
         LIMIT :n
           FOR UPDATE OF l SKIP LOCKED)
    RETURNING session, token, expires_at, target
"""


class FleetRepo:
    """Hosts and leases in PostgreSQL (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        if db.kind != "postgres":
            raise StoreError(
                'a fleet needs PostgreSQL: set [store] url = "postgresql://..." on every host'
            )
        self.db = db

    async def now(self) -> float:
        """The database clock (unix seconds): the one every lease is measured by."""
        row = await self.db.fetchone("SELECT extract(epoch FROM now()) AS now")
        assert row is not None
        return float(row["now"])

    async def heartbeat(
        self, host: str, *, max_sessions: int, headroom_mib: int, sessions: int, version: str
    ) -> None:
        """Register `host` or refresh it: its capacity (and how many sessions it held when
        it measured its headroom), version and heartbeat."""
        await self.db.execute(
            "INSERT INTO hosts (host_id, max_sessions, headroom_mib, sessions_then, version,"
            " started_at, heartbeat_at) VALUES (:host, :max, :mib, :n, :version,"
            " extract(epoch FROM now()), extract(epoch FROM now()))"
            " ON CONFLICT (host_id) DO UPDATE SET max_sessions = excluded.max_sessions,"
            " headroom_mib = excluded.headroom_mib, sessions_then = excluded.sessions_then,"
            " version = excluded.version, heartbeat_at = excluded.heartbeat_at",
            {
                "host": host,
                "max": max_sessions,
                "mib": headroom_mib,
                "n": sessions,
                "version": version,
            },
        )

    async def hosts(self) -> list[HostRecord]:
        """Every host that ever registered, with its live lease count."""
        return [HostRecord.of(r) for r in await self.db.fetchall(_HOSTS)]

    async def set_draining(self, host: str, draining: bool) -> bool:
        """Mark `host` draining (it gives its sessions away) or back in service; False
        when no such host registered."""
        changed = await self.db.execute(
            "UPDATE hosts SET draining = ? WHERE host_id = ?", (int(draining), host)
        )
        return changed > 0

    async def ensure(self, session: str, target: str = "") -> None:
        """A lease row for `session` (unowned), meant for `target` first when given."""
        await self.db.execute(
            "INSERT INTO leases (session, target) VALUES (?, ?) ON CONFLICT (session) DO NOTHING",
            (session, target or None),
        )

    async def claimable(self, host: str, ttl: float) -> tuple[int, int]:
        """How many sessions that should run have no live lease, and how many of those were
        moved to `host`. Sessions without a lease row get one first (unowned)."""
        await self.db.execute(
            "INSERT INTO leases (session) SELECT name FROM sessions"
            " WHERE NOT EXISTS (SELECT 1 FROM leases l WHERE l.session = sessions.name)"
            " ON CONFLICT (session) DO NOTHING"
        )
        row = await self.db.fetchone(
            "SELECT count(*) AS unowned, count(*) FILTER (WHERE l.target = :host) AS for_me"
            " FROM leases l JOIN sessions s ON s.name = l.session"
            " WHERE s.desired = 'running' AND (l.host_id IS NULL OR l.expires_at <= extract(epoch FROM now()))",
            {"host": host},
        )
        assert row is not None
        return int(row["unowned"]), int(row["for_me"])

    async def claim(self, host: str, n: int, ttl: float) -> list[Lease]:
        """Take up to `n` unowned leases for `host` for `ttl` seconds; each gets a new token."""
        if n <= 0:
            return []
        rows = await self.db.fetchall(_CLAIM, {"host": host, "n": n, "ttl": ttl})
        return [Lease.of(r) for r in rows]

    async def renew(self, host: str, ttl: float) -> list[Lease]:
        """Extend every lease `host` still holds (not yet expired) by `ttl` from now; the
        leases renewed. One an expiry already ended is not revived: it is lost (so is one
        whose session was deleted)."""
        rows = await self.db.fetchall(
            "UPDATE leases l SET expires_at = extract(epoch FROM now()) + :ttl FROM sessions s"
            " WHERE s.name = l.session AND l.host_id = :host"
            " AND l.expires_at > extract(epoch FROM now())"
            " RETURNING l.session, l.token, l.expires_at, l.target, s.desired",
            {"host": host, "ttl": ttl},
        )
        return [Lease.of(r) for r in rows]

    async def release(self, host: str, session: str, token: int) -> bool:
        """Give a lease back (its session stopped here): unowned at once, the token kept so
        the next claim's is larger. False when it was no longer ours."""
        changed = await self.db.execute(
            "UPDATE leases SET host_id = NULL, expires_at = 0"
            " WHERE session = ? AND host_id = ? AND token = ?",
            (session, host, token),
        )
        return changed > 0

    async def move(self, session: str, target: str) -> bool:
        """Ask that `session` run on `target`: its owner releases it, `target` claims it
        first. False when the session has no lease row."""
        changed = await self.db.execute(
            "UPDATE leases SET target = ? WHERE session = ?", (target, session)
        )
        return changed > 0

    async def owners(self) -> dict[str, str]:
        """Session -> the host holding a live lease on it."""
        rows = await self.db.fetchall(
            "SELECT session, host_id FROM leases WHERE host_id IS NOT NULL AND expires_at > extract(epoch FROM now())"
        )
        return {r["session"]: r["host_id"] for r in rows}

    async def forget(self, session: str) -> None:
        """Drop `session`'s lease row (the session was deleted)."""
        await self.db.execute("DELETE FROM leases WHERE session = ?", (session,))


async def fence(tx: Executor, session: str, host: str, token: int) -> None:
    """Inside the caller's transaction: the lease of `session` is `host`'s with `token` and
    has not expired, and stays so until the transaction ends (the row is share-locked, so a
    claim by another host waits for this commit). StaleLease otherwise: the caller's
    transaction must roll back, since another host owns (or may own) the session now."""
    row = await tx.fetchone(
        "SELECT host_id, token, expires_at > extract(epoch FROM now()) AS live FROM leases"
        " WHERE session = ? FOR SHARE",
        (session,),
    )
    if row is None or row["host_id"] != host or int(row["token"]) != token or not row["live"]:
        owner = "" if row is None else (row["host_id"] or "")
        raise StaleLease(
            f"{host} no longer holds the lease of {session} (token {token}); "
            + (f"{owner} owns it now" if owner and owner != host else "it expired")
            + ": this host must stop that session and change nothing of it",
            session=session,
            host=host,
            token=token,
        )


def clock_skew(url: str) -> float:
    """Seconds this host's clock is ahead of the database's (negative: behind), measured
    against the middle of one round trip; for `wasupd check`. StoreError when unreachable."""
    # psycopg only here: this module is imported by every daemon, most of them on SQLite.
    import psycopg

    from wasupd.store.backend.postgres import CONNECT_TIMEOUT, connect_error, where

    place = where(url)
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            before = time.time()
            row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
            after = time.time()
    except psycopg.Error as exc:
        raise connect_error(place, exc) from exc
    assert row is not None
    return (before + after) / 2 - float(row[0])
