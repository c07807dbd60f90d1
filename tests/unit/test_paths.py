"""Default paths: systemd's directories, the system paths for root and the service user, XDG
for everyone else; and the socket `wasupctl` picks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.daemon import make_dirs
from tests.helpers.service_env import ServiceEnv
from wasupd import paths

WASUPD = [sys.executable, "-m", "wasupd.daemon"]


def test_systemd_directories_win(tmp_path: Path) -> None:
    """The unit's RuntimeDirectory/StateDirectory/ConfigurationDirectory/LoadCredential decide
    where an unconfigured daemon reads its config and key and puts its socket and state."""
    conf, creds = tmp_path / "etc", tmp_path / "creds"
    conf.mkdir()
    creds.mkdir()
    (conf / "wasupd.toml").write_text("[qr]\nmax_per_hour = 3\n")
    (creds / "profile-key").write_text("")
    env = {
        "PATH": "/usr/bin:/bin",
        "CONFIGURATION_DIRECTORY": str(conf),
        "RUNTIME_DIRECTORY": f"{tmp_path / 'run'}:/run/other",  # the first one is ours
        "STATE_DIRECTORY": str(tmp_path / "state"),
        "CREDENTIALS_DIRECTORY": str(creds),
    }
    out = subprocess.run(
        [*WASUPD, "--print-config"], capture_output=True, text=True, timeout=30, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "max_per_hour = 3" in out.stdout
    assert f'socket = "{tmp_path / "run" / "wasupd.sock"}"' in out.stdout
    assert f'state_dir = "{tmp_path / "state"}"' in out.stdout
    assert f'key_file = "{creds / "profile-key"}"' in out.stdout


@pytest.mark.service_user
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as other users")
def test_the_service_user_gets_the_system_paths(service_env: ServiceEnv) -> None:
    """The owner of the system state dir is the service user: system paths, not XDG ones; any
    other unprivileged user keeps the XDG paths."""
    root = make_dirs()[0]
    try:
        root.chmod(0o755)
        state = root / "lib"
        state.mkdir()
        os.chown(state, 65534, -1)
        probe = (
            "import sys; from pathlib import Path; from wasupd import paths;"
            f" print(paths.system_mode(Path({str(state)!r})))"
        )
        as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        run_probe = [*as_user, *service_env.argv, "-c", probe]
        mine = subprocess.run(run_probe, capture_output=True, text=True, timeout=30)
        os.chown(state, 0, -1)
        other = subprocess.run(run_probe, capture_output=True, text=True, timeout=30)
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=True)
    assert mine.stdout.strip() == "True", mine.stderr
    assert other.stdout.strip() == "False", other.stderr


def test_wasupctl_falls_back_to_the_system_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user with no daemon of their own reaches the system daemon; their own daemon, once it
    runs, comes first, but only from a directory no one else can write; with neither, the own
    path is named (the error says how to start)."""
    monkeypatch.setattr(paths, "system_mode", lambda *a: False)
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "user"))
    own = tmp_path / "user" / "wasupd" / "wasupd.sock"
    system = tmp_path / "system" / "wasupd.sock"
    assert paths.client_socket(system) == own
    system.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(system))
        assert paths.client_socket(system) == system
        own.parent.mkdir(parents=True)
        with socket.socket(socket.AF_UNIX) as mine:
            mine.bind(str(own))
            assert paths.client_socket(system) == own
            own.parent.chmod(0o777)  # like /tmp: anyone could have put that socket there
            assert paths.client_socket(system) == system
