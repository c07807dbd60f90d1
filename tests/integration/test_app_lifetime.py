"""The App's lifetimes: a start that fails half-way closes everything it had started."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tests.integration.test_metrics_http import free_port
from wasupd.app import App
from wasupd.config import parse_config
from wasupd.errors import Busy
from wasupd.services import build_services


async def test_a_failed_socket_start_closes_what_started_before(tmp_path: Path) -> None:
    """The control socket cannot be bound (another daemon serves it): `running()` raises Busy,
    and every part started before is closed again: no task of the App is left, the metrics
    port is free and the session manager is closed."""
    sock_path = tmp_path / "run" / "wasupd.sock"
    sock_path.parent.mkdir()
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(sock_path))
    other.listen()
    port = free_port()
    config = parse_config(
        {
            "daemon": {
                "socket": str(sock_path),
                "socket_group": "",
                "runtime_dir": str(tmp_path / "run"),
                "state_dir": str(tmp_path / "state"),
            },
            "profiles": {"key_file": str(tmp_path / "profile.key")},
            "metrics": {"listen": f"127.0.0.1:{port}"},
        }
    )
    before = asyncio.all_tasks()
    app = App(config, tmp_path / "wasupd.toml", build_services(config))
    try:
        with pytest.raises(Busy, match="another wasupd is already serving"):
            async with app.running():
                pytest.fail("the App must not run without its socket")
    finally:
        other.close()
    assert asyncio.all_tasks() == before
    with socket.socket() as probe:  # the exporter's listener was closed
        probe.bind(("127.0.0.1", port))
    assert app.manager.closing  # the session manager was closed
