"""App: the daemon's parts built from the configuration, with their lifetimes nested in order.

Start: store -> sessions (runners loaded) -> RPC socket -> restore running sessions.
Stop:  RPC stops accepting -> sessions stop in parallel under the deadline -> store closes.
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
from wasupd.config import LIVE_RELOADABLE, Config
from wasupd.errors import ConfigError
from wasupd.events import EventBus
from wasupd.messaging.service import Messaging
from wasupd.messaging.webhooks import Webhooks
from wasupd.profiles.admin import ProfilesAdmin
from wasupd.rpc.dispatch import Dispatcher
from wasupd.rpc.peer import Authorizer
from wasupd.rpc.server import RpcServer
from wasupd.sessions import Services, SessionManager
from wasupd.store import retention as retentionmod
from wasupd.store.db import Database
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
        self.started_at = time.time()
        self.fd_limit = raise_fd_limit()
        self.dispatcher = Dispatcher()
        self.db: Database
        self.sessions_repo: SessionRepo
        self.manager: SessionManager
        self.server: RpcServer
        self.extensions: list[Any] = []
        # Extra metric families (e.g. the outbox's), each a callable yielding metric families.
        self.metric_sources: list[Any] = []

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[App]:
        """Open the store, load sessions, bind the socket, restore sessions; undo in reverse."""
        self.config.state_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db = await Database.open(self.config.state_path / "wasupd.db")
        try:
            self.sessions_repo = SessionRepo(self.db)
            self.manager = SessionManager(
                config=self.config,
                repo=self.sessions_repo,
                bus=self.bus,
                services=self.services,
                on_report=self._on_report,
            )
            self.messages = MessageRepo(self.db)
            async with self.manager, Webhooks(self.config.webhooks, self.db) as self.webhooks:
                self.messaging = Messaging(
                    config=self.config,
                    repo=self.messages,
                    manager=self.manager,
                    bus=self.bus,
                    webhooks=self.webhooks,
                )
                await self.messaging.__aenter__()
                self.extensions.append(self.messaging)
                self.metric_sources.append(self._outbox_metrics)
                self.profiles_admin = ProfilesAdmin(self)
                self._register_methods()
                self.server = RpcServer(
                    path=self.config.socket_path,
                    dispatcher=self.dispatcher,
                    authorizer=self._authorizer(),
                    mode=self.config.daemon.socket_mode,
                    group=self.config.daemon.socket_group,
                    max_message_bytes=self.config.daemon.max_message_bytes,
                )
                await self.server.start()
                reaper = asyncio.ensure_future(OrphanReaper().run())
                retention = asyncio.ensure_future(
                    retentionmod.run(self.db, lambda: self.config.daemon.retention_days)
                )
                try:
                    self.manager.restore()
                    yield self
                finally:
                    await self.server.close(drain_timeout=5.0)
                    self.bus.close_all()
                    reaper.cancel()
                    retention.cancel()
                    await asyncio.gather(reaper, retention, return_exceptions=True)
                    await self.messaging.__aexit__(None, None, None)
        finally:
            await self.db.close()

    def _authorizer(self) -> Authorizer:
        d = self.config.daemon
        return Authorizer(
            socket_group=d.socket_group, allow_users=d.allow_users, allow_groups=d.allow_groups
        )

    async def _on_report(self, name: str, report: Any) -> None:
        for ext in self.extensions:
            await ext.on_report(name, report)

    def _register_methods(self) -> None:
        from wasupd.rpc.methods import register_all

        register_all(self.dispatcher, self)

    _outbox_counts: dict[str, int] = {}

    def _outbox_metrics(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        fam = GaugeMetricFamily(
            "wasupd_outbox_messages", "Outbox messages by state", labels=["state"]
        )
        for state, n in self._outbox_counts.items():
            fam.add_metric([state], n)
        yield fam

    def summary(self) -> str:
        """One line for sd_notify STATUS=."""
        counts: dict[str, int] = {}
        for runner in self.manager.runners.values():
            counts[runner.state.value] = counts.get(runner.state.value, 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no sessions"
        return f"{len(self.manager.runners)} sessions: {parts}"

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
            self.config = configmod.Config(
                **{
                    **{f: getattr(self.config, f) for f in self.config.__dataclass_fields__},
                    **_live_sections(self.config, new),
                }
            )
            self.manager.update_config(self.config)
            self.messaging.update_config(self.config)
            logs.set_level(self.config.daemon.log_level)
            self.server.authorizer = self._authorizer()
        log.info("config_reloaded", applied=live, need_restart=need_restart)
        return {"applied": live, "need_restart": need_restart}


def _live_sections(old: Config, new: Config) -> dict[str, Any]:
    """The sections of `new` whose keys all reload live; daemon keeps its restart-only keys."""
    daemon = dataclasses.replace(
        old.daemon,
        log_level=new.daemon.log_level,
        allow_users=new.daemon.allow_users,
        allow_groups=new.daemon.allow_groups,
        retention_days=new.daemon.retention_days,
    )
    return {
        "daemon": daemon,
        "limits": new.limits,
        "restart": new.restart,
        "health": new.health,
        "qr": new.qr,
        "send": new.send,
    }
