"""`[metrics] listen`: Prometheus scrapes the daemon over HTTP, the same text as `metrics.get`."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import tomli_w
from prometheus_client import CONTENT_TYPE_LATEST

from tests.helpers.daemon import base_config, make_dirs
from tests.helpers.waiting import eventually
from wasupd.profiles.keys import generate_key_file


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> tuple[str, str]:
    """(Content-Type, body) of one GET."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.headers["Content-Type"], resp.read().decode()


def names(text: str) -> set[str]:
    """The metric family names of an exposition."""
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_metrics_are_served_over_http(daemon_factory: Any) -> None:
    """GET /metrics answers in the Prometheus text format with the families of `metrics.get`,
    live figures included (a session just created appears; the outbox counts are there)."""
    port = free_port()
    d = daemon_factory(metrics={"listen": f"127.0.0.1:{port}"})
    d.call("session.create", name="shop", start=False)
    ctype, body = scrape(f"http://127.0.0.1:{port}/metrics")
    assert ctype == CONTENT_TYPE_LATEST  # the version generate_latest writes
    assert 'wasupd_session_state{session="shop",state="stopped"} 1.0' in body
    assert "wasupd_outbox_messages" in names(body)
    assert names(body) == names(d.call("metrics.get")["text"])
    assert '"metrics_listening"' in d.log()
    assert scrape(f"http://127.0.0.1:{port}/")[1].startswith("wasupd exporter")


def test_without_listen_no_port_is_opened(daemon_factory: Any) -> None:
    """Off by default: the daemon opens no TCP socket at all."""
    d = daemon_factory()
    assert d.proc is not None
    assert psutil.Process(d.proc.pid).net_connections(kind="tcp") == []


def test_a_port_in_use_stops_the_start_with_the_key_named() -> None:
    """An address that cannot be bound: the daemon exits 2 at start and says which key."""
    root, runtime, state = make_dirs()
    try:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            cfg = base_config(runtime, state, metrics={"listen": f"127.0.0.1:{port}"})
            path = root / "wasupd.toml"
            path.write_text(tomli_w.dumps(cfg))
            generate_key_file(Path(cfg["profiles"]["key_file"]))
            out = subprocess.run(
                [sys.executable, "-m", "wasupd.daemon", "--config", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
            )
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=True)
    assert out.returncode == 2, out.stderr
    assert "metrics.listen" in out.stderr and "daemon_start_failed" in out.stderr


def test_a_malformed_listen_address_is_a_config_error(tmp_path: Path) -> None:
    """`--check-config` names the key and the expected form."""
    path = tmp_path / "wasupd.toml"
    path.write_text('[metrics]\nlisten = "9464"\n')
    out = subprocess.run(
        [sys.executable, "-m", "wasupd.daemon", "--config", str(path), "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "metrics.listen" in out.stderr and "127.0.0.1:9464" in out.stderr


def test_status_and_metrics_report_the_event_loop_lag(daemon_factory: Any) -> None:
    """`daemon.status` has `loop_lag` (latest and worst of the window, in ms) and the metrics
    the same worst, in seconds; `tasks` counts the asyncio tasks alive: figures a soak or a
    monitor can follow over time."""
    d = daemon_factory()
    lag = eventually(
        lambda: d.call("daemon.status")["loop_lag"],
        10,
        "a first lag probe",
        ok=lambda v: v["max_ms"] > 0,
    )
    assert 0 < lag["max_ms"] < 5000 and lag["window_s"] == 60.0
    status = d.call("daemon.status")
    assert status["tasks"] >= 4  # at least the lag probe, the trimmer, reaper, retention
    memory = status["memory"]  # the daemon's memory by owner (Debian: every figure known)
    assert 10 << 20 < memory["rss"] < 1 << 30, memory
    assert memory["malloc_in_use"] > 0 and memory["sqlite"] > 0 and memory["python_blocks"] > 0
    line = next(
        x
        for x in d.call("metrics.get")["text"].splitlines()
        if x.startswith("wasupd_event_loop_lag_seconds ")
    )
    assert 0 < float(line.split()[1]) < 5.0
