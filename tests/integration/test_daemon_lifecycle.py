"""The daemon process: config commands, systemd notify protocol, reload, refusal of newer data."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess
from tests.helpers.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
WASUPD = [sys.executable, "-m", "wasupd.daemon"]


def test_check_and_print_config(tmp_path: Path) -> None:
    """--check-config validates (exit 0 / 2 naming the key), --print-config prints TOML."""
    good = tmp_path / "good.toml"
    good.write_text("[limits]\nmax_sessions = 7\n")
    out = subprocess.run(
        [*WASUPD, "--config", str(good), "--check-config"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and "configuration OK" in out.stdout
    out = subprocess.run(
        [*WASUPD, "--config", str(good), "--print-config"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "max_sessions = 7" in out.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[browser]\nstop_timeout = "soon"\n')
    out = subprocess.run(
        [*WASUPD, "--config", str(bad), "--check-config"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "browser.stop_timeout: expected a number" in out.stderr


def test_wasupd_config_env_is_honoured(tmp_path: Path) -> None:
    """WASUPD_CONFIG selects the file when --config is not given."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[qr]\nmax_per_hour = 2\n")
    out = subprocess.run(
        [*WASUPD, "--print-config"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"WASUPD_CONFIG": str(cfg), "PATH": "/usr/bin:/bin"},
    )
    assert "max_per_hour = 2" in out.stdout


def test_systemd_units_verify(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the shipped units (ExecStart pointed at this install)."""
    exe = Path(shutil.which("wasupd") or Path(sys.executable).with_name("wasupd"))
    for name in ("wasupd.service", "wasupd-backup.service", "wasupd-backup.timer"):
        unit = (ROOT / "systemd" / name).read_text()
        unit = unit.replace("/usr/bin/wasupd", str(exe))
        unit = unit.replace("/usr/bin/wasupctl", str(exe.with_name("wasupctl")))
        (tmp_path / name).write_text(unit)
    out = subprocess.run(
        ["systemd-analyze", "verify", *(str(p) for p in sorted(tmp_path.iterdir()))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "Unknown key" not in out.stderr and "Unknown section" not in out.stderr, out.stderr


def test_sd_notify_ready_watchdog_status_stopping(daemon_factory: Any) -> None:
    """Under a NOTIFY_SOCKET the daemon sends READY=1 after binding, WATCHDOG=1 pings and STOPPING=1."""
    d: DaemonProcess = daemon_factory(start=False)
    nsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = d.root / "notify"
    nsock.bind(str(path))
    nsock.settimeout(20)
    d.write_config()
    log = open(d.log_path, "ab")
    d.proc = subprocess.Popen(
        [*WASUPD, "--config", str(d.config_path)],
        stdout=log,
        stderr=log,
        env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000", "PATH": "/usr/bin:/bin"},
    )
    log.close()
    try:
        msgs: list[str] = []

        def receive() -> list[str]:
            msgs.append(nsock.recv(4096).decode())  # blocks for the next datagram (20 s at most)
            return msgs

        def heard(word: str) -> Callable[[list[str]], bool]:
            return lambda got: any(word in m for m in got)

        eventually(receive, 20, "WATCHDOG=1", ok=heard("WATCHDOG=1"), interval=0)
        assert "READY=1" in msgs[0] and "STATUS=" in msgs[0]
        assert d.socket.exists()  # READY only after the socket is bound
        assert any("WATCHDOG=1" in m for m in msgs)
        d.proc.send_signal(signal.SIGTERM)
        eventually(receive, 30, "STOPPING=1", ok=heard("STOPPING=1"), interval=0)
        assert d.proc.wait(30) == 0
    finally:
        nsock.close()


def test_sighup_reloads_live_keys_and_names_restart_keys(daemon_factory: Any) -> None:
    """SIGHUP applies limits live and says which changed keys need a restart."""
    d = daemon_factory()
    d.config.setdefault("limits", {})["max_sessions"] = 3
    d.config["browser"]["url"] = "http://127.0.0.1:1/"
    d.write_config()
    d.proc.send_signal(signal.SIGHUP)
    eventually(d.log, 20, "config_reloaded in the log", ok=lambda log: '"config_reloaded"' in log)
    line = next(ln for ln in d.log().splitlines() if '"config_reloaded"' in ln)
    assert "limits.max_sessions" in line and "browser.url" in line
    assert d.call("daemon.reload") == {"applied": [], "need_restart": ["browser.url"]}


def test_newer_database_refused(daemon_factory: Any) -> None:
    """A database from a newer wasupd stops the daemon with a clear message; the file is untouched."""
    d: DaemonProcess = daemon_factory(start=False)
    db = d.state_dir / "wasupd.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version=999")
    con.close()
    before = db.read_bytes()
    with pytest.raises(AssertionError, match="exited"):
        d.start()
    assert "written by a newer wasupd" in d.log()
    assert db.read_bytes() == before


def test_missing_socket_group_is_logged_and_the_daemon_serves(daemon_factory: Any) -> None:
    """An unknown daemon.socket_group does not stop the daemon, but the log says who is locked out."""
    d = daemon_factory(daemon={"socket_group": "no-such-group-wasupd"})
    assert d.call("daemon.status")["sessions"] is not None
    line = next(json.loads(x) for x in d.log().splitlines() if "socket_group_missing" in x)
    assert line["group"] == "no-such-group-wasupd" and "systemd-sysusers" in line["hint"]
