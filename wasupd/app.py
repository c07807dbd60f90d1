"""App: the daemon's parts built from the configuration, with their lifetimes nested in order.

This is the composition root: the one place that knows every part. Each part is handed the
few collaborators it uses (no part reaches back into the App).

Start: store -> sessions (runners loaded) -> webhooks -> messaging -> profile admin ->
background loops (reaper, retention) -> metrics listener -> RPC socket -> restore sessions.
Stop, in reverse: RPC stops accepting -> event streams end -> background loops are cancelled ->
messaging and webhooks finish what is in flight -> sessions stop in parallel -> store closes.
If a step of the start fails, everything started before it is closed the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import resource
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog

from wasupd import config as configmod
from wasupd import logs
from wasupd.admin import ProfilesAdmin
from wasupd.campaigns.service import Campaigns
from wasupd.config import LIVE_RELOADABLE, Config
from wasupd.errors import ConfigError
from wasupd.events import EventBus
from wasupd.heap import Trimmer
from wasupd.looplag import LoopLag
from wasupd.loops import keep_running
from wasupd.messaging.media import MediaIntake
from wasupd.messaging.service import Messaging
from wasupd.messaging.webhooks import Webhooks
from wasupd.metrics import DaemonFacts, Metrics
from wasupd.rpc.dispatch import Dispatcher
from wasupd.rpc.methods import register_methods
from wasupd.rpc.methods.campaigns import CampaignMethods
from wasupd.rpc.methods.daemon import DaemonMethods
from wasupd.rpc.methods.fleet import FleetMethods
from wasupd.rpc.methods.media import MediaMethods
from wasupd.rpc.methods.messages import MessageMethods
from wasupd.rpc.methods.sessions import SessionMethods
from wasupd.rpc.peer import Authorizer
from wasupd.rpc.server import RpcServer
from wasupd.sessions import Services, SessionManager
from wasupd.store import retention
from wasupd.store.campaigns import CampaignRepo
from wasupd.store.db import Database, open_database
from wasupd.store.media import MediaStore
from wasupd.store.messages import MessageRepo
from wasupd.store.sessions import SessionRepo
from wasupd.supervision.reaper import OrphanReaper

log = structlog.get_logger("wasupd")


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (50 Chromium trees need thousands)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class App:
    """Holds the configuration and every long-lived part of the daemon."""

    def __init__(self, config: Config, config_path: Path, services: Services) -> None:
        self.config = config
        self.config_path = config_path
        self.services = services
        self.bus = EventBus()
        self.facts = DaemonFacts(started_at=time.time(), fd_limit=raise_fd_limit())
        self.lag = LoopLag()
        self.manager: SessionManager
        self.messaging: Messaging
        self.server: RpcServer

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[App]:
        """Start every part in order, serve, and undo in reverse (also when a start fails)."""
        async with contextlib.AsyncExitStack() as stack:
            await self._start(stack)
            yield self

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        config = self.config
        config.state_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = await open_database(config.state.database, config.store.url)
        stack.push_async_callback(db.close)
        sessions_repo, messages = SessionRepo(db), MessageRepo(db)
        # In a fleet the leases go back only after every session stopped here (below).
        self.fleet: Fleet | None = None
        stack.push_async_callback(self._release_leases)
        self.manager = manager = await stack.enter_async_context(
            SessionManager(config=config, repo=sessions_repo, bus=self.bus, services=self.services)
        )
        webhooks = await stack.enter_async_context(Webhooks(config.webhooks, db))
        media = MediaStore(config.state.media)
        self.messaging = messaging = await stack.enter_async_context(
            Messaging(
                config=config,
                repo=messages,
                sessions=manager,
                bus=self.bus,
                webhooks=webhooks,
                media=media,
            )
        )
        manager.route_reports_to(messaging.on_report)
        campaign_repo = CampaignRepo(db, messages)
        campaigns = await stack.enter_async_context(
            Campaigns(
                config=lambda: self.config,
                repo=campaign_repo,
                messages=messages,
                messaging=messaging,
                bus=self.bus,
                webhooks=webhooks,
            )
        )
        messaging.route_inbound_to(campaigns.on_inbound)
        if db.kind == "postgres":  # a fleet: sessions run where their lease is
            from wasupd.fleet.service import Fleet  # psycopg: only a PostgreSQL host needs it

            self.fleet = Fleet(
                config=config, db=db, sessions=manager, bus=self.bus, wake=messaging.wake
            )
            manager.leased = True
            self.facts = dataclasses.replace(self.facts, host=config.daemon.host_id)
            manager.owner_of = self.fleet.keeper.owner_of
            manager.speaks_for = self.fleet.keeper.speaks_for
            manager.forward = self.fleet.ask
            messages.fence = self.fleet.keeper.fence
            await stack.enter_async_context(self.fleet.running())
        admin = await stack.enter_async_context(ProfilesAdmin(config=config, sessions=manager))
        await stack.enter_async_context(self._background(db, media))
        dispatcher = Dispatcher()
        self.server = server = RpcServer(
            path=config.socket_path,
            dispatcher=dispatcher,
            authorizer=self._authorizer(),
            mode=config.daemon.socket_mode,
            group=config.daemon.socket_group,
            max_message_bytes=config.daemon.max_message_bytes,
        )
        metrics = Metrics(
            facts=self.facts, sessions=manager, rpc=server, outbox=messages, lag=self.lag
        )
        if config.metrics.listen:
            # Imported only when [metrics] listen is set: its HTTP server (aiohttp) costs a
            # daemon about 10 MiB of RSS (docs/chromium.md, "Memory: what is left").
            from wasupd import exporter

            await stack.enter_async_context(
                exporter.serving(config.metrics.listen, metrics.exposition)
            )
        intake = MediaIntake(config.state.uploads, media)
        register_methods(
            dispatcher,
            DaemonMethods(
                config=lambda: self.config,
                config_path=self.config_path,
                facts=self.facts,
                lag=self.lag,
                sessions=manager,
                bus=self.bus,
                subscribers=server.subscriber_count,
                admin=admin,
                metrics=metrics,
                reload=self.reload_config,
            ),
            SessionMethods(sessions=manager, repo=sessions_repo, admin=admin),
            MessageMethods(
                config=lambda: self.config,
                sessions=manager,
                messaging=messaging,
                repo=messages,
                webhooks=webhooks,
                suppressed=campaign_repo.is_suppressed,
                intake=intake,
            ),
            CampaignMethods(campaigns=campaigns, repo=campaign_repo, intake=intake),
            MediaMethods(intake=intake, repo=messages, downloads=messaging.downloads, store=media),
            FleetMethods(
                fleet=self.fleet.repo if self.fleet else None,
                ttl=config.fleet.lease_timeout,
                repo=sessions_repo,
            ),
        )
        await server.start()
        stack.push_async_callback(self._stop_serving)
        # First of all at shutdown: a database that stopped answering must not hold it up.
        stack.callback(db.closing)
        manager.restore()

    @contextlib.asynccontextmanager
    async def _background(self, db: Database, media: MediaStore) -> AsyncIterator[None]:
        """The daemon-wide loops, in a TaskGroup of their own, cancelled at shutdown."""
        group = asyncio.TaskGroup()
        await group.__aenter__()
        tasks = [
            group.create_task(keep_running("reaper", OrphanReaper().run)),
            group.create_task(keep_running("loop_lag", self.lag.run)),
            group.create_task(keep_running("malloc_trim", Trimmer().run)),
            group.create_task(
                keep_running(
                    "retention",
                    lambda: retention.run(
                        db,
                        lambda: self.config.daemon.retention_days,
                        media=(media, self.config.state.uploads),
                    ),
                )
            ),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            # Not handed the exception that ends the daemon: it would come back wrapped in an
            # ExceptionGroup; the loops themselves never raise (keep_running).
            await group.__aexit__(None, None, None)

    async def _release_leases(self) -> None:
        if self.fleet is not None:
            await self.fleet.keeper.release_all()

    async def _stop_serving(self) -> None:
        await self.server.close(drain_timeout=5.0)
        self.bus.close_all()

    def _authorizer(self) -> Authorizer:
        d = self.config.daemon
        return Authorizer(
            socket_group=d.socket_group, allow_users=d.allow_users, allow_groups=d.allow_groups
        )

    def summary(self) -> str:
        """One line for sd_notify STATUS=."""
        counts: dict[str, int] = {}
        for runner in self.manager.runners.values():
            counts[runner.state.value] = counts.get(runner.state.value, 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no sessions"
        n = len(self.manager.runners)
        return f"{n} session{'' if n == 1 else 's'}: {parts}"

    def reload_config(self) -> dict[str, Any]:
        """Re-read the config file; apply the live keys, report the ones that need a restart."""
        try:
            new = configmod.load_config(self.config_path)
        except ConfigError as exc:
            log.error("config_reload_failed", error=exc.message)
            raise
        changed = configmod.changed_keys(self.config, new)
        live = [k for k in changed if k in LIVE_RELOADABLE]
        need_restart = [k for k in changed if k not in LIVE_RELOADABLE]
        if live:
            self.config = configmod.apply_live(self.config, new)
            self.manager.update_config(self.config)
            self.messaging.update_config(self.config)
            logs.set_level(self.config.daemon.log_level)
            self.server.authorizer = self._authorizer()
        log.info("config_reloaded", applied=live, need_restart=need_restart)
        return {"applied": live, "need_restart": need_restart}
