"""The daemon's own share of a session's memory: what it does not use, it does not load.

A daemon on SQLite without `[metrics] listen` (the defaults) never imports psycopg (the
PostgreSQL backend) or aiohttp (the metrics exporter and the webhook client), even with a
session of real Chromium at the QR; each is loaded once the configuration uses it. Read from
the daemon's own /proc/<pid>/maps: an imported extension module is a mapped shared object.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_linking import start
from tests.helpers.daemon import DaemonProcess

pytestmark = pytest.mark.chromium
# The compiled parts of each package: mapped exactly when the package is imported.
PSYCOPG = "psycopg_binary/_psycopg"
AIOHTTP = "aiohttp/_http_parser"


def mapped(d: DaemonProcess) -> str:
    """The daemon's memory map (paths of every mapped file)."""
    assert d.proc is not None
    return Path(f"/proc/{d.proc.pid}/maps").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_default_daemon_with_a_session_at_the_qr_loads_neither_psycopg_nor_aiohttp(
    daemon_factory: Any, sim_factory: Any
) -> None:
    sim = sim_factory(time_factor=1.0)
    d = start(daemon_factory, sim, browser={"build": "headless-shell"})
    d.call("session.create", name="lean")
    d.wait_state("lean", "qr", timeout=60)
    maps = mapped(d)
    assert PSYCOPG not in maps
    assert AIOHTTP not in maps


def test_metrics_listen_loads_aiohttp(daemon_factory: Any) -> None:
    d = daemon_factory(metrics={"listen": f"127.0.0.1:{free_port()}"})
    maps = mapped(d)
    assert AIOHTTP in maps
    assert PSYCOPG not in maps
