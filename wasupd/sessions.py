"""SessionManager: the registry of session runners, admission control and restore at start.

It owns one `SessionRunner` per session (each `run()` task lives in the manager's TaskGroup),
stores every transition, publishes events, and decides whether a new start is admitted
(`limits.max_sessions`, host MemAvailable above `limits.host_memory_reserve_mib`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import structlog

from wasupd.addressing import normalize_phone
from wasupd.config import Config
from wasupd.errors import Busy, InvalidArgument, InvalidState, SessionNotFound, Timeout
from wasupd.events import EventBus
from wasupd.store.sessions import SessionRecord, SessionRepo
from wasupd.supervision.gate import StartGate, default_limit
from wasupd.supervision.runner import SessionRunner, Transition
from wasupd.supervision.seams import (
    Clock,
    DriverReport,
    Launcher,
    LaunchRequest,
    MessagePort,
    ProfileHooks,
    SessionDriver,
    SessionOptions,
)
from wasupd.supervision.states import IDLE_STATES, RUNNING_STATES, STARTABLE_STATES, SessionState

log = structlog.get_logger("wasupd.sessions")

ELSEWHERE_POLL_S = 1.0  # s between looks at what another fleet host did (a QR, a stop)
STOP_ELSEWHERE_S = 120.0  # s a stop on another host may take (its next round, then the stop)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ReportSink = Callable[[str, DriverReport], Awaitable[None]]


def check_name(name: str) -> str:
    """Validate a session name: 1-63 of a-z, 0-9, `_`, `-`, starting with a letter or digit."""
    if not NAME_RE.match(name):
        raise InvalidArgument(
            f"invalid session name {name!r}: use 1-63 characters of a-z, 0-9, '_' and '-',"
            " starting with a letter or digit",
            session=name,
        )
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """The production (or fake) collaborators the runners are built from."""

    launcher: Launcher
    driver_factory: Callable[[str, SessionOptions], SessionDriver]
    profiles_factory: Callable[[str], ProfileHooks]
    build_request: Callable[[str, Path, SessionOptions], LaunchRequest]
    clock: Clock


def options_from_dict(data: dict[str, Any], phone: str | None) -> SessionOptions:
    """Per-session overrides as stored in the database."""
    known = {k: v for k, v in data.items() if k in SessionOptions.__dataclass_fields__}
    if "extra_args" in known:
        known["extra_args"] = tuple(known["extra_args"])
    return SessionOptions(**{**known, "phone": phone})


class SessionManager:
    """Creates, starts, stops and deletes sessions; restores the running ones at daemon start."""

    def __init__(
        self,
        *,
        config: Config,
        repo: SessionRepo,
        bus: EventBus,
        services: Services,
        on_report: ReportSink | None = None,
    ) -> None:
        self.config = config
        self.repo = repo
        self.bus = bus
        self.services = services
        self.on_report_hook = on_report
        self.runners: dict[str, SessionRunner] = {}
        # In-memory copy of each session's row, refreshed after every write (status is hot).
        self.records: dict[str, SessionRecord] = {}
        self.profiles: dict[str, ProfileHooks] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._restore_task: asyncio.Task[None] | None = None
        self.closing = False
        # In a fleet (a PostgreSQL store) a session runs here only while this host holds its
        # lease: `start` records the wish and the lease keeper calls `run_here`/`stop_here`.
        self.leased = False
        self.owner_of: Callable[[str], str] = lambda name: ""
        # False for a session whose lease this host lost (another host may run it now): its
        # stop here is written neither to the store nor to webhooks.
        self.speaks_for: Callable[[str], bool] = lambda name: True
        # In a fleet: ask the host that runs a session to restart, log out or delete it
        # (wasupd.fleet.service.Fleet.ask); None on a single host.
        self.forward: Callable[[str, str, dict[str, Any]], Awaitable[None]] | None = None
        self.start_gate = StartGate(lambda: default_limit(self.config.limits.max_concurrent_starts))

    # -- lifetime --------------------------------------------------------------------------

    async def __aenter__(self) -> SessionManager:
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        for record in await self.repo.all():
            self._add_runner(record)
        return self

    async def _refresh(self, name: str) -> None:
        self.records[name] = await self.repo.get(name)

    def described(self) -> list[dict[str, Any]]:
        """Every session as `describe` shows it, by name, without touching the database."""
        return [self.describe(self.records[n]) for n in sorted(self.records)]

    async def __aexit__(self, *exc: Any) -> None:
        await self.close_all()
        assert self._group is not None
        await self._group.__aexit__(None, None, None)

    def restore(self) -> None:
        """Start, staggered, every session that should be running (desired = running); in a
        fleet the lease keeper starts the ones this host claims instead."""
        assert self._group is not None
        if self.leased:
            return
        self._restore_task = self._group.create_task(self._restore(), name="sessions:restore")

    async def _restore(self) -> None:
        for record in await self.repo.all():
            if record.desired != "running" or self.closing:
                continue
            try:
                await self.start(record.name, restoring=True)
            except Exception as exc:
                log.warning("restore_failed", session=record.name, error=str(exc))
            await asyncio.sleep(self.config.daemon.start_stagger)

    async def close_all(self) -> None:
        """Stop every session in parallel (daemon shutdown); runners end their loops."""
        self.closing = True
        if self._restore_task is not None:
            self._restore_task.cancel()
            await asyncio.gather(self._restore_task, return_exceptions=True)
        await asyncio.gather(*(r.close() for r in self.runners.values()), return_exceptions=True)

    def route_reports_to(self, sink: ReportSink) -> None:
        """Hand every page report (after the manager's own handling) to `sink` (messaging)."""
        self.on_report_hook = sink

    def update_config(self, config: Config) -> None:
        """SIGHUP: hand the live-reloadable parts to every runner."""
        self.config = config
        self.start_gate.wake()  # a raised max_concurrent_starts lets waiters go now
        for runner in self.runners.values():
            runner.update_config(config)

    # -- runners ---------------------------------------------------------------------------

    def _add_runner(self, record: SessionRecord) -> SessionRunner:
        name = record.name
        options = options_from_dict(record.options, record.phone)
        profiles = self.services.profiles_factory(name)
        state = SessionState(record.state)
        if state in RUNNING_STATES or state is SessionState.BACKOFF:
            state = SessionState.STOPPED  # the daemon was not running: nothing of ours runs now
        runner = SessionRunner(
            name,
            config=self.config,
            options=options,
            launcher=self.services.launcher,
            driver_factory=lambda: self.services.driver_factory(name, options),
            profiles=profiles,
            clock=self.services.clock,
            on_transition=self._on_transition,
            on_report=self._on_report,
            build_request=lambda n, d: self.services.build_request(n, d, options),
            initial_state=state,
            restarts=record.restarts,
            start_gate=self.start_gate,
        )
        self.runners[name] = runner
        self.records[name] = record
        self.profiles[name] = profiles
        assert self._group is not None
        # A fresh context: the runner must not inherit the rpc_id of the request that created it.
        self._tasks[name] = self._group.create_task(
            runner.run(), name=f"session:{name}", context=contextvars.Context()
        )
        return runner

    def runner(self, name: str) -> SessionRunner:
        """The runner of `name`; `SessionNotFound` if there is none."""
        try:
            return self.runners[name]
        except KeyError:
            raise SessionNotFound(
                f"no session named {name!r} (see `wasupctl session list`)", session=name
            ) from None

    async def _on_transition(self, t: Transition) -> None:
        owner = self.owner_of(t.session) if self.leased else ""
        me = self.config.daemon.host_id
        if self.leased and not self.speaks_for(t.session):
            owner = owner if owner and owner != me else "another host"
        if owner and owner != me:
            # A session this host gave up (or lost) stopping here: the row is its new
            # owner's to write, and so are the webhooks (`elsewhere`: the session runs on
            # `owner`); this host only tells its own subscribers.
            self.bus.publish(
                "state",
                session=t.session,
                **{"from": t.from_state.value, "to": t.to_state.value},
                reason=t.reason,
                elsewhere=owner,
            )
            return
        try:
            await self._record(t)
        finally:
            # Announced even when the store could not record it (a database away): the
            # senders and the pool follow what the session does, not what was written.
            self.bus.publish(
                "state",
                session=t.session,
                **{"from": t.from_state.value, "to": t.to_state.value},
                reason=t.reason,
            )
            log.info(
                "session_state",
                session=t.session,
                from_state=t.from_state.value,
                to_state=t.to_state.value,
                reason=t.reason,
            )

    async def _record(self, t: Transition) -> None:
        """Write a transition of a session this host runs: its state, history, restart
        count, link time, and in a fleet that its QR is gone."""
        await self.repo.record_transition(
            t.session,
            from_state=t.from_state.value,
            to_state=t.to_state.value,
            reason=t.reason,
            at=t.at,
        )
        runner = self.runners.get(t.session)
        if runner is not None:
            await self.repo.set_restarts(t.session, runner.restarts)
        if self.leased and t.from_state is SessionState.QR:
            await self.repo.set_qr(t.session, None)  # no QR on offer any more
        if t.to_state is SessionState.CONNECTED:
            await self.repo.set_linked(t.session, me=None, at=t.at)
        if t.session in self.records:
            await self._refresh(t.session)

    async def _on_report(self, name: str, report: DriverReport) -> None:
        if report.kind == "qr" and self.leased and self.speaks_for(name):
            await self.repo.set_qr(name, dict(report.data))  # for `session.qr` on other hosts
        if report.kind == "state" and report.data.get("me"):
            await self.repo.set_linked(name, me=str(report.data["me"]), at=time.time())
            await self._refresh(name)
        if self.on_report_hook is not None:
            await self.on_report_hook(name, report)
        if report.kind in ("qr", "code", "reclaim"):
            self.bus.publish(report.kind, session=name, **report.data)

    # -- what messaging sees (messaging.seams.SessionDirectory) ------------------------------

    def names(self) -> list[str]:
        """Every session's name."""
        return list(self.runners)

    def state_of(self, name: str) -> SessionState | None:
        """The session's state; None for an unknown name."""
        runner = self.runners.get(name)
        return runner.state if runner is not None else None

    def state_anywhere(self, name: str) -> SessionState | None:
        """The session's state wherever it runs: this host's, or in a fleet the state its
        owner stored (as read at the last lease round); None for an unknown name."""
        runner = self.runners.get(name)
        if runner is None:
            return None
        if self.leased and self.runs_elsewhere(name):
            return SessionState(self.records[name].state)
        return runner.state

    def connected_anywhere(self) -> list[str]:
        """Sessions connected here or, in a fleet, on another host: the `auto` pool."""
        return [n for n in self.runners if self.state_anywhere(n) is SessionState.CONNECTED]

    def port(self, name: str) -> MessagePort | None:
        """The session's page when it is connected, else None."""
        runner = self.runners.get(name)
        if runner is None or runner.state is not SessionState.CONNECTED:
            return None
        return runner.driver

    def options_of(self, name: str) -> dict[str, Any]:
        """The session's stored options; {} for an unknown name."""
        record = self.records.get(name)
        return record.options if record is not None else {}

    def linked_at(self, name: str) -> float | None:
        """When the session's number was first linked."""
        record = self.records.get(name)
        return record.linked_at if record is not None else None

    # -- admission -------------------------------------------------------------------------

    def active_count(self) -> int:
        """Sessions that hold (or are about to hold) a browser."""
        live = RUNNING_STATES | {SessionState.BACKOFF}
        return sum(1 for r in self.runners.values() if r.state in live)

    def admit(self) -> None:
        """Refuse a new start when max_sessions is reached or the host is short of memory."""
        limits = self.config.limits
        if self.closing:
            raise Busy("the daemon is shutting down")
        if self.active_count() >= limits.max_sessions:
            raise Busy(
                f"max_sessions ({limits.max_sessions}) sessions are already running; stop one"
                " or raise limits.max_sessions",
            )
        available = psutil.virtual_memory().available // (1024 * 1024)
        if available < limits.host_memory_reserve_mib:
            raise Busy(
                f"host memory is short: {available} MiB available, below the reserve of"
                f" {limits.host_memory_reserve_mib} MiB (limits.host_memory_reserve_mib)",
            )

    # -- operations ------------------------------------------------------------------------

    async def _set_desired(self, name: str, desired: str) -> None:
        await self.repo.set_desired(name, desired)
        await self._refresh(name)

    async def create(
        self, name: str, *, phone: str | None, options: dict[str, Any], start: bool
    ) -> SessionRecord:
        """Create a session (and start it unless `start` is false)."""
        check_name(name)
        phone = normalize_phone(phone) if phone else None
        record = await self.repo.create(name, phone=phone, options=options, now=time.time())
        self._add_runner(record)
        if start:
            await self.start(name)
        return await self.repo.get(name)

    async def start(self, name: str, *, restoring: bool = False) -> None:
        """Start a stopped/failed/logged-out session."""
        runner = self.runner(name)
        if runner.state not in STARTABLE_STATES:
            raise InvalidState(
                f"session {name!r} is {runner.state.value}; only a stopped, failed or"
                " logged-out session can be started (use restart)",
                session=name,
                state=runner.state.value,
            )
        if self.leased:  # the host with the most room claims it (wasupd.fleet)
            await self._set_desired(name, "running")
            log.info("session_start_requested", session=name, placed_by="lease")
            return
        self.admit()
        await self._set_desired(name, "running")
        await runner.start()
        if not restoring:
            log.info("session_start_requested", session=name)

    async def stop(self, name: str) -> None:
        """Stop a session and wait until its browser is gone."""
        runner = self.runner(name)
        await self._set_desired(name, "stopped")  # in a fleet its owner gives it up ...
        if self.leased and self.runs_elsewhere(name):
            await self._until_given_up(name)  # ... and this returns once it did
            return
        await runner.stop()

    async def _until_given_up(self, name: str) -> None:
        """In a fleet: wait until no host runs `name` (its owner saw the wish at its next
        lease round, stopped the browser and released the lease); Busy past STOP_ELSEWHERE_S."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_ELSEWHERE_S
        while host := self.runs_elsewhere(name):
            if loop.time() >= deadline:
                raise Busy(
                    f"host {host} did not stop session {name!r} within {STOP_ELSEWHERE_S:g} s;"
                    " it stops it when it renews its leases again (wasupctl host list)",
                    session=name,
                    host=host,
                )
            await asyncio.sleep(ELSEWHERE_POLL_S)

    async def _forwarded(self, name: str, op: str, args: dict[str, Any]) -> bool:
        """In a fleet, when another host runs `name`: `op` is carried out there (this call
        returns once it was, or raises what went wrong there); False when it runs here."""
        self.runner(name)  # SessionNotFound first
        host = self.runs_elsewhere(name)
        if not host:
            return False
        if self.forward is None:
            raise InvalidState(
                f"session {name!r} runs on host {host}: {op} it there (wasupctl on {host})",
                session=name,
                host=host,
            )
        await self.forward(name, op, args)
        if op == "delete":
            await self.refresh()  # gone from the store: gone from this host's view too
        return True

    async def perform(self, name: str, op: str, args: dict[str, Any]) -> None:
        """Carry out what an operator on another host asked of a session this host runs
        (wasupd.fleet.keeper.FleetSessions)."""
        if op == "restart":
            await self.restart(name)
        elif op == "logout":
            await self.logout(name)
        elif op == "delete":
            await self.delete(name, force=bool(args.get("force")))
        else:
            raise InvalidArgument(f"no such request as {op!r} (restart, logout, delete)")

    async def restart(self, name: str) -> None:
        """Stop and start again (a stopped session is just started)."""
        if await self._forwarded(name, "restart", {}):
            return
        runner = self.runner(name)
        if runner.state in IDLE_STATES:
            await self.start(name)
            return
        await self._set_desired(name, "running")
        await runner.restart("restart requested")

    async def logout(self, name: str) -> None:
        """Unlink this device from the phone and wipe the profile."""
        if await self._forwarded(name, "logout", {}):
            return
        runner = self.runner(name)
        await self._set_desired(name, "stopped")
        await runner.logout()

    async def delete(self, name: str, *, force: bool) -> None:
        """Delete a session; a running one only with `force` (it is stopped first)."""
        if await self._forwarded(name, "delete", {"force": force}):
            return
        runner = self.runner(name)
        if runner.state not in IDLE_STATES:
            if not force:
                raise InvalidState(
                    f"session {name!r} is {runner.state.value}; stop it first or use --force",
                    session=name,
                    state=runner.state.value,
                )
            await runner.stop()
        if not await self._end_runner(name, self.config.browser.stop_timeout + 10):
            # Its browser may still use the profile: never wipe under it.
            raise Busy(
                f"session {name!r} did not stop in time; its profile was kept, try again",
                session=name,
            )
        self._forget(name)
        profiles = self.profiles.pop(name)
        await profiles.release(wipe=True)
        await self.repo.delete(name)
        self.bus.publish("deleted", session=name)

    async def _end_runner(self, name: str, timeout: float) -> bool:
        """Close `name`'s runner and wait up to `timeout` s for its task; whether it ended."""
        await self.runners[name].close()
        task = self._tasks.get(name)
        if task is not None:
            await asyncio.wait({task}, timeout=timeout)
        return task is None or task.done()

    def _forget(self, name: str) -> None:
        """Drop `name`'s runner, task and record from this host's view (its profiles are
        the caller's: wiped by a delete, untouched for one deleted on another host)."""
        self._tasks.pop(name, None)
        self.runners.pop(name, None)
        self.records.pop(name, None)

    # -- a fleet (wasupd.fleet.keeper.FleetSessions) -----------------------------------------

    async def run_here(self, name: str) -> None:
        """This host holds `name`'s lease: start it here (also one created on another host)."""
        runner = self.runners.get(name)
        if runner is None:
            runner = self._add_runner(await self.repo.get(name))
        if runner.state in STARTABLE_STATES and not self.closing:
            await runner.start()
            log.info("session_claimed_here", session=name)

    async def stop_here(self, name: str, reason: str) -> None:
        """Stop `name`'s browser here and return once it is gone (its profile sealed); the
        wish to run it stays for the host that takes it next."""
        runner = self.runners.get(name)
        if runner is not None and runner.state not in IDLE_STATES:
            log.info("session_leaving_here", session=name, reason=reason)
            await runner.stop()

    async def refresh(self) -> None:
        """Read again what other hosts wrote: new sessions, desired states, their states;
        a session deleted on another host (idle here) leaves this host's view."""
        records = {record.name: record for record in await self.repo.all()}
        for record in records.values():
            if record.name not in self.runners:
                self._add_runner(record)
            else:
                self.records[record.name] = record
        for name in [n for n in self.runners if n not in records]:
            runner = self.runners[name]
            if runner.state not in IDLE_STATES:
                continue  # running here: its own stop comes first (the lease is lost)
            await self._end_runner(name, 5)  # idle: its task ends at once
            self._forget(name)
            self.profiles.pop(name, None)  # nothing of it was prepared on this host
            self.bus.publish("deleted", session=name)

    async def until_placed(self, name: str, timeout: float) -> None:
        """In a fleet: wait, at most `timeout` s, while a session that should run is not yet
        started by any host (a start is taken up at the next lease round); at once otherwise."""
        runner = self.runner(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (
            self.leased
            and runner.state is SessionState.STOPPED
            and self.records[name].desired == "running"
            and not self.runs_elsewhere(name)
            and loop.time() < deadline
        ):  # woken by this host's start; another host's claim shows at the next round
            left = deadline - loop.time()
            with contextlib.suppress(Timeout):
                await runner.wait_for(set(SessionState) - {SessionState.STOPPED}, min(left, 1.0))

    async def qr_elsewhere(self, name: str, wait: float) -> dict[str, Any] | None:
        """In a fleet, for a session another host runs: the QR it offers, as that host
        stored it, waiting up to `wait` s for one; None when it runs here (or on no host)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while self.leased and self.runs_elsewhere(name):
            record = await self.repo.get(name)
            if record.state == SessionState.QR.value and record.qr is not None:
                return {"session": name, "state": record.state, **record.qr}
            if loop.time() >= deadline:
                raise InvalidState(
                    f"session {name!r} is {record.state} on host {self.runs_elsewhere(name)}:"
                    " no QR is on offer"
                    + (" (already linked)" if record.state == SessionState.CONNECTED.value else ""),
                    session=name,
                    state=record.state,
                )
            await asyncio.sleep(min(ELSEWHERE_POLL_S, max(0.0, deadline - loop.time())))
        return None

    def runs_elsewhere(self, name: str) -> str:
        """In a fleet, the host that runs `name` when it is not this one ('' otherwise)."""
        runner = self.runners.get(name)
        host = self.owner_of(name) if self.leased else ""
        local = runner is not None and runner.state not in IDLE_STATES
        return host if host and not local else ""

    def describe(self, record: SessionRecord) -> dict[str, Any]:
        """The session as shown by `session.get` / `session.list`."""
        runner = self.runners.get(record.name)
        if self.leased and self.runs_elsewhere(record.name):
            runner = None  # another host runs it: what it stored is the truth
        out: dict[str, Any] = {
            "name": record.name,
            "phone": record.phone,
            "me": record.me,
            "state": runner.state.value if runner else record.state,
            "reason": runner.reason if runner else record.reason,
            "desired": record.desired,
            "options": record.options,
            "created_at": record.created_at,
            "linked_at": record.linked_at,
            "restarts": runner.restarts if runner else record.restarts,
            "pid": None,
            "started_at": None,
            "usage": None,
        }
        if self.leased:
            out["host"] = self.owner_of(record.name)
        if runner is not None:
            out["pid"] = runner.pid
            out["started_at"] = runner.started_at
            out["usage"] = runner.usage.as_dict() if runner.usage else None
            out["reports_waiting"] = runner.reports_waiting
            profiles = self.profiles.get(record.name)
            if profiles is not None:
                out["storage"] = profiles.sizes()
        return out
