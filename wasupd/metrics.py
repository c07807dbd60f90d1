"""`metrics.get`: Prometheus text exposition of the daemon and every session.

A custom collector reads the live state at scrape time (no counters to keep in step);
prometheus_client renders the exposition format.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import psutil
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from wasupd.supervision.states import SessionState

if TYPE_CHECKING:
    from wasupd.app import App

_SELF = psutil.Process()


class WasupCollector(Collector):
    """Collects from the App at scrape time."""

    def __init__(self, app: App, extra: list[Callable[[], Iterator[Any]]]) -> None:
        self.app = app
        self.extra = extra

    def collect(self) -> Iterator[Any]:
        yield from self._daemon()
        yield from self._sessions()
        for fn in self.extra:
            yield from fn()

    def _daemon(self) -> Iterator[Any]:
        app = self.app
        yield GaugeMetricFamily("wasupd_up", "1 while the daemon answers", value=1)
        yield GaugeMetricFamily(
            "wasupd_uptime_seconds",
            "Seconds since the daemon started",
            value=time.time() - app.started_at,
        )
        yield GaugeMetricFamily(
            "wasupd_daemon_fds", "Open file descriptors of the daemon", value=_SELF.num_fds()
        )
        yield GaugeMetricFamily(
            "wasupd_daemon_fd_limit", "RLIMIT_NOFILE of the daemon", value=app.fd_limit
        )
        yield GaugeMetricFamily(
            "wasupd_daemon_rss_bytes",
            "Resident memory of the daemon process",
            value=_SELF.memory_info().rss,
        )
        yield CounterMetricFamily(
            "wasupd_rpc_requests", "RPC requests answered", value=app.server.requests_served
        )
        by_state = GaugeMetricFamily("wasupd_sessions", "Sessions by state", labels=["state"])
        counts = {s.value: 0 for s in SessionState}
        for runner in app.manager.runners.values():
            counts[runner.state.value] += 1
        for state, n in counts.items():
            by_state.add_metric([state], n)
        yield by_state

    def _sessions(self) -> Iterator[Any]:
        manager = self.app.manager
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
        for name, runner in sorted(manager.runners.items()):
            state.add_metric([name, runner.state.value], 1)
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
        yield from gauges.values()
        yield from storage.values()


def exposition(app: App, extra: list[Callable[[], Iterator[Any]]] | None = None) -> str:
    """The Prometheus text format for the current state."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WasupCollector(app, extra or []))
    return generate_latest(registry).decode()
