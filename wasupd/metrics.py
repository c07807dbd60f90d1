"""Prometheus text exposition of the daemon, every session and the outbox.

Served by `metrics.get` on the control socket and, when `[metrics] listen` is set, over HTTP
(`wasupd.exporter`). A custom collector reads the live state at scrape time (no counters to
keep in step); prometheus_client renders the exposition format.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import psutil
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from wasupd.looplag import LoopLag
from wasupd.sessions import SessionManager
from wasupd.supervision.runner import SessionRunner
from wasupd.supervision.states import IDLE_STATES, SessionState

_SELF = psutil.Process()


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonFacts:
    """What is known of the daemon process from its start."""

    started_at: float
    fd_limit: int
    host: str = ""  # daemon.host_id when this daemon is a fleet host (a PostgreSQL store)


class RequestCounter(Protocol):
    """The RPC server's count of answered requests."""

    @property
    def requests_served(self) -> int:
        """Requests answered so far."""
        ...


class OutboxCounts(Protocol):
    """The outbox store's count of messages by state."""

    async def counts(self) -> dict[str, int]:
        """Messages per state."""
        ...


class Metrics:
    """Renders the exposition from the collaborators it reads; one instance per daemon."""

    def __init__(
        self,
        *,
        facts: DaemonFacts,
        sessions: SessionManager,
        rpc: RequestCounter,
        outbox: OutboxCounts,
        lag: LoopLag,
    ) -> None:
        self.facts, self.sessions, self.rpc, self.outbox = facts, sessions, rpc, outbox
        self.lag = lag

    async def exposition(self) -> str:
        """The Prometheus text format for the current state."""
        collector = WasupCollector(self, await self.outbox.counts())
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        return generate_latest(registry).decode()


class WasupCollector(Collector):
    """One scrape: the live state read through `Metrics`, the outbox counts read before."""

    def __init__(self, metrics: Metrics, outbox_counts: dict[str, int]) -> None:
        self.metrics = metrics
        self.outbox_counts = outbox_counts

    def collect(self) -> Iterator[Any]:
        host = self.metrics.facts.host
        for family in (*self._daemon(), *self._sessions(), *self._outbox()):
            if host:  # a fleet host: every series names it, so the hosts' scrapes add up
                family.samples = [
                    s._replace(labels={**s.labels, "host": host}) for s in family.samples
                ]
            yield family

    def _reported(self, runner: SessionRunner) -> bool:
        """Whether this daemon reports a session: always on a single host; in a fleet only
        while its browser runs on this host (each session is then reported once, by the
        host that runs it; idle sessions show in `wasupctl status`)."""
        return not self.metrics.facts.host or runner.state not in IDLE_STATES

    def _outbox(self) -> Iterator[Any]:
        fam = GaugeMetricFamily(
            "wasupd_outbox_messages", "Outbox messages by state", labels=["state"]
        )
        for state, n in self.outbox_counts.items():
            fam.add_metric([state], n)
        yield fam

    def _daemon(self) -> Iterator[Any]:
        m = self.metrics
        yield GaugeMetricFamily("wasupd_up", "1 while the daemon answers", value=1)
        if m.facts.host:  # `collect` adds the host label
            yield GaugeMetricFamily("wasupd_fleet_host", "1 on a host of a fleet", value=1)
        yield GaugeMetricFamily(
            "wasupd_uptime_seconds",
            "Seconds since the daemon started",
            value=time.time() - m.facts.started_at,
        )
        yield GaugeMetricFamily(
            "wasupd_daemon_fds", "Open file descriptors of the daemon", value=_SELF.num_fds()
        )
        yield GaugeMetricFamily(
            "wasupd_daemon_fd_limit", "RLIMIT_NOFILE of the daemon", value=m.facts.fd_limit
        )
        yield GaugeMetricFamily(
            "wasupd_daemon_rss_bytes",
            "Resident memory of the daemon process",
            value=_SELF.memory_info().rss,
        )
        yield GaugeMetricFamily(
            "wasupd_event_loop_lag_seconds",
            f"Worst delay of the event loop waking a timer in the last {m.lag.window:g} s",
            value=m.lag.worst(),
        )
        yield CounterMetricFamily(
            "wasupd_rpc_requests", "RPC requests answered", value=m.rpc.requests_served
        )
        by_state = GaugeMetricFamily("wasupd_sessions", "Sessions by state", labels=["state"])
        counts = {s.value: 0 for s in SessionState}
        for runner in m.sessions.runners.values():
            if self._reported(runner):
                counts[runner.state.value] += 1
        for state, n in counts.items():
            by_state.add_metric([state], n)
        yield by_state

    def _sessions(self) -> Iterator[Any]:
        manager = self.metrics.sessions
        state = GaugeMetricFamily(
            "wasupd_session_state", "1 for the state the session is in", labels=["session", "state"]
        )
        restarts = CounterMetricFamily(
            "wasupd_session_restarts", "Restarts after crashes and watchdogs", labels=["session"]
        )
        gauges = {
            "pss_bytes": GaugeMetricFamily(
                "wasupd_session_pss_bytes", "PSS of the browser tree", labels=["session"]
            ),
            "fds": GaugeMetricFamily(
                "wasupd_session_fds", "Open fds of the browser tree", labels=["session"]
            ),
            "processes": GaugeMetricFamily(
                "wasupd_session_processes", "Processes in the browser tree", labels=["session"]
            ),
            "cpu_percent": GaugeMetricFamily(
                "wasupd_session_cpu_percent",
                "CPU of the browser tree (% of one core)",
                labels=["session"],
            ),
        }
        storage = {
            "live_bytes": GaugeMetricFamily(
                "wasupd_session_live_profile_bytes",
                "Size of the live profile dir",
                labels=["session"],
            ),
            "sealed_bytes": GaugeMetricFamily(
                "wasupd_session_sealed_profile_bytes",
                "Size of the sealed archive",
                labels=["session"],
            ),
        }
        waiting = GaugeMetricFamily(
            "wasupd_session_reports_waiting",
            "Page reports (messages, acks, states) received and not handled yet",
            labels=["session"],
        )
        for name, runner in sorted(manager.runners.items()):
            if not self._reported(runner):
                continue
            state.add_metric([name, runner.state.value], 1)
            waiting.add_metric([name], runner.reports_waiting)
            restarts.add_metric([name], runner.restarts)
            usage = runner.usage
            if usage is not None:
                for key, fam in gauges.items():
                    fam.add_metric([name], float(getattr(usage, key)))
            profiles = manager.profiles.get(name)
            if profiles is not None:
                sizes = profiles.sizes()
                for key, fam in storage.items():
                    fam.add_metric([name], float(sizes.get(key, 0)))
        yield state
        yield restarts
        yield waiting
        yield from gauges.values()
        yield from storage.values()
