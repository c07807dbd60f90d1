"""Methods about the daemon itself: status, health, events, metrics, reload."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from wasupd import __version__, heap
from wasupd.admin import ProfilesAdmin
from wasupd.config import Config
from wasupd.events import EventBus
from wasupd.looplag import LoopLag
from wasupd.metrics import DaemonFacts, Metrics
from wasupd.rpc.server import Context
from wasupd.sessions import SessionManager
from wasupd.supervision.states import SessionState

# Health verdicts, monitoring-plugin convention (wasupctl health exit codes).
OK, WARNING, CRITICAL = "OK", "WARNING", "CRITICAL"
_SESSION_HEALTH = {
    SessionState.CONNECTED: OK,
    SessionState.STOPPED: OK,
    SessionState.STARTING: WARNING,
    SessionState.SYNCING: WARNING,
    SessionState.QR: WARNING,
    SessionState.DEGRADED: WARNING,
    SessionState.BACKOFF: WARNING,
    SessionState.STOPPING: WARNING,
    SessionState.LOGGED_OUT: CRITICAL,
    SessionState.FAILED: CRITICAL,
}
_RANK = {OK: 0, WARNING: 1, CRITICAL: 2}


_SELF = psutil.Process()
_FDS_MAX_AGE = 1.0
_fds_cache: tuple[float, int] = (-_FDS_MAX_AGE, 0)


def _open_fds() -> int:
    """The daemon's open fd count, at most `_FDS_MAX_AGE` old: listing /proc/self/fd costs more
    than the rest of `daemon.status`, which monitoring may call many times a second."""
    global _fds_cache
    now = time.monotonic()
    if now - _fds_cache[0] >= _FDS_MAX_AGE:
        _fds_cache = (now, _SELF.num_fds())
    return _fds_cache[1]


_TASKS_MAX_AGE = 1.0
_tasks_cache: tuple[float, int] = (-_TASKS_MAX_AGE, 0)


def _live_tasks() -> int:
    """The asyncio tasks alive, counted at most every `_TASKS_MAX_AGE`: `all_tasks` visits
    every task of the daemon (several per session), and a task leak shows over minutes."""
    global _tasks_cache
    now = time.monotonic()
    if now - _tasks_cache[0] >= _TASKS_MAX_AGE:
        _tasks_cache = (now, len(asyncio.all_tasks()))
    return _tasks_cache[1]


def session_health(state: SessionState) -> str:
    """OK, WARNING or CRITICAL for one session state."""
    return _SESSION_HEALTH[state]


class DaemonMethods:
    """`daemon.*`, `events.subscribe` and `metrics.get`."""

    def __init__(
        self,
        *,
        config: Callable[[], Config],
        config_path: Path,
        facts: DaemonFacts,
        lag: LoopLag,
        sessions: SessionManager,
        bus: EventBus,
        subscribers: Callable[[], int],
        admin: ProfilesAdmin,
        metrics: Metrics,
        reload: Callable[[], dict[str, Any]],
    ) -> None:
        self.config, self.config_path, self.facts, self.lag = config, config_path, facts, lag
        self.sessions, self.bus, self.subscribers = sessions, bus, subscribers
        self.admin, self._metrics, self._reload = admin, metrics, reload

    async def backup(self, ctx: Context, keep: int = 0) -> dict[str, Any]:
        """Write a consistent backup while sessions run: every running session is checkpointed,
        then the database (one snapshot) and every sealed archive (authenticated) go to a new
        `<state_dir>/backups/wasupd-<UTC time>` directory, complete once it has that name.
        With `keep` > 0 only the newest `keep` backups stay. Returns `path`, `sessions`,
        `files`, `bytes`, `pruned`, `not_checkpointed` (session -> why its previous archive
        was used) and `damaged` (session -> why its archive failed authentication and was
        left out). `Busy` while another backup is being written."""
        return await self.admin.backup(keep)

    def status(self, ctx: Context) -> dict[str, Any]:
        """Daemon version, pid, uptime, socket, open fd headroom, event-loop lag (`loop_lag`:
        the latest and the worst wake-up delay of the last minute, in ms), the asyncio tasks
        alive (`tasks`), the daemon's own memory by owner (`memory`, bytes: `rss`,
        `malloc_in_use`, `malloc_free` held by malloc unused, `malloc_mmap`, `sqlite`, and
        `python_blocks` a count of objects; null where the system cannot tell) and a summary
        of every session."""
        sessions = self.sessions.described()
        config = self.config()
        by_state: dict[str, int] = {}
        for s in sessions:
            by_state[s["state"]] = by_state.get(s["state"], 0) + 1
        return {
            "version": __version__,
            "pid": os.getpid(),
            "started_at": self.facts.started_at,
            "uptime": time.time() - self.facts.started_at,
            "socket": config.daemon.socket,
            "config_file": str(self.config_path),
            "state_dir": config.daemon.state_dir,
            "fds": _open_fds(),
            "fd_limit": self.facts.fd_limit,
            "loop_lag": self.lag.summary(),
            "tasks": _live_tasks(),  # a soak watches it: a task leak shows here
            "memory": heap.usage(),
            "sessions_by_state": by_state,
            "subscribers": self.subscribers(),
            "sessions": sessions,
        }

    def health(self, ctx: Context, session: str | None = None) -> dict[str, Any]:
        """Health verdict (OK / WARNING / CRITICAL) of the daemon, or of one session when named.

        A session is OK when connected (or deliberately stopped), WARNING while starting,
        waiting for a QR scan, degraded or backing off, CRITICAL when failed or logged out.
        """
        runners = self.sessions.runners
        if session is not None:
            self.sessions.runner(session)  # SessionNotFound for unknown names
            names = [session]
        else:
            names = sorted(runners)
        checks = []
        worst = OK
        for name in names:
            runner = runners[name]
            verdict = session_health(runner.state)
            checks.append(
                {
                    "session": name,
                    "state": runner.state.value,
                    "status": verdict,
                    "reason": runner.reason,
                }
            )
            if _RANK[verdict] > _RANK[worst]:
                worst = verdict
        return {"status": worst, "sessions": checks}

    async def subscribe(
        self, ctx: Context, types: list[str] | None = None, sessions: list[str] | None = None
    ) -> dict[str, Any]:
        """Stream events on this connection as `event` notifications.

        Filters: `types` (state, qr, code, reclaim, message, ack, sent, deleted...) and
        `sessions`; empty means all. Each event carries `type`, `seq`, `at` and its own fields.
        """
        sub = self.bus.subscribe(types or (), sessions or ())
        ctx.conn.stream(sub)
        return {"subscribed": True, "types": types or [], "sessions": sessions or []}

    async def metrics(self, ctx: Context) -> dict[str, Any]:
        """Prometheus text exposition (`text`) of daemon and per-session metrics."""
        return {"text": await self._metrics.exposition()}

    async def reload(self, ctx: Context) -> dict[str, Any]:
        """Re-read the config file (like SIGHUP); says which changed keys need a restart."""
        return self._reload()
