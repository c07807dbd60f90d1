"""The daemon as the shipped systemd unit runs it: an unprivileged user, no paths in the config,
the directories and the key credential that systemd hands over in the environment, and real
Chromium with its own sandbox on. (No systemd here: its environment is reproduced.)"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import psutil
import pytest

from tests.helpers.daemon import await_qr, logged_daemon, make_dirs, socket_call
from tests.helpers.service_env import ServiceEnv
from tests.helpers.waiting import eventually
from wasupd.profiles.keys import generate_key_file

NOBODY = 65534


@pytest.mark.service_user
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the daemon as another user")
def test_unprivileged_daemon_uses_systemd_directories_and_the_sandbox(
    sim_factory: Any, service_env: ServiceEnv
) -> None:
    """RuntimeDirectory/StateDirectory/ConfigurationDirectory/LoadCredential decide every path,
    the socket and profiles belong to the service user, its Chromium keeps its sandbox, and
    SIGTERM leaves nothing running and the profile sealed."""
    sim = sim_factory()
    root = make_dirs()[0]
    root.chmod(0o755)
    etc, run, state, creds = (root / n for n in ("etc", "run-unit", "state-unit", "creds"))
    for d, mode in ((etc, 0o755), (run, 0o750), (state, 0o700), (creds, 0o700)):
        d.mkdir(mode=mode)
        os.chown(d, NOBODY, NOBODY)
    (etc / "wasupd.toml").write_text(f'[daemon]\nsocket_group = ""\n[browser]\nurl = "{sim.url}"\n')
    generate_key_file(creds / "profile-key")
    os.chown(creds / "profile-key", NOBODY, NOBODY)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(state),
        "CONFIGURATION_DIRECTORY": str(etc),
        "RUNTIME_DIRECTORY": str(run),
        "STATE_DIRECTORY": str(state),
        "CREDENTIALS_DIRECTORY": str(creds),
    }
    as_service_user = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    sock = run / "wasupd.sock"
    with logged_daemon([*as_service_user, *service_env.wasupd], env, root / "daemon.log", sock):
        assert os.stat(sock).st_uid == NOBODY
        socket_call(sock, "session.create", name="svc")
        info = await_qr(sock, "svc", "a QR from the unprivileged daemon")
        browser = psutil.Process(info["pid"])
        assert browser.uids().effective == NOBODY
        assert "--no-sandbox" not in browser.cmdline()
        assert any(a == f"--user-data-dir={run / 'profiles' / 'svc'}" for a in browser.cmdline())
        assert "sandbox_disabled" not in (root / "daemon.log").read_text()
    # The browser was reaped by the daemon; its pid vanishes at once.
    eventually(lambda: not psutil.pid_exists(info["pid"]), 10, "the browser's pid to vanish")
    assert (state / "profiles" / "svc.wasup").stat().st_uid == NOBODY
    assert not any((run / "profiles").iterdir()), "no plaintext profile left after stop"
    subprocess.run(["rm", "-rf", str(root)], check=True)
