"""The unit's confinement, emulated without systemd: Chromium still starts with its own
user-namespace sandbox on under an empty capability bounding set (CapabilityBoundingSet=),
no_new_privs (NoNewPrivileges=yes), the namespace and architecture seccomp filter
(RestrictNamespaces=user pid net, SystemCallArchitectures=native), a private mount namespace
(PrivateMounts=yes) and a /proc mounted hidepid=invisible (ProtectProc=invisible)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers.daemon import await_qr, logged_daemon, make_dirs, socket_call
from tests.helpers.service_env import ServiceEnv
from tests.helpers.waiting import eventually
from wasupd.profiles.keys import generate_key_file

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
FILTER = ROOT / "tests/helpers/unit_sandbox.py"
SYSTEM_PYTHON = Path("/usr/bin/python3")


def system_python_matches() -> bool:
    """Debian's python3 is the same minor version as this one, so it can run this checkout
    (the test interpreter may live under /root, which the service user cannot enter)."""
    out = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() == str(sys.version_info[:2])


def ns(pid: int, kind: str) -> str:
    """The namespace `kind` (user, pid, net, mnt) that process `pid` is in."""
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def status_field(pid: int, name: str) -> str:
    """One field of /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in /proc/{pid}/status")


def readable_filter(root: Path) -> Path:
    """A copy of the filter script in `root` (0755), which the service user can read wherever
    this checkout is."""
    copy = root / FILTER.name
    shutil.copyfile(FILTER, copy)
    copy.chmod(0o644)
    return copy


def confined(argv: list[str], filter_script: Path) -> list[str]:
    """`argv` the way the unit confines the daemon, as far as it can be without systemd."""
    as_unit = (
        "mount -t proc -o hidepid=invisible proc /proc && "
        f"exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups "
        '--bounding-set=-all --no-new-privs "$@"'
    )
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        as_unit,
        "sh",
        str(SYSTEM_PYTHON),
        str(filter_script),
        *argv,
    ]


needs = pytest.mark.skipif(
    os.geteuid() != 0 or platform.machine() != "x86_64" or not system_python_matches(),
    reason="needs root, x86-64 (the filter's syscall numbers) and Debian's python3 of this version",
)


@needs
@pytest.mark.service_user
def test_the_emulated_filter_refuses_what_the_unit_refuses() -> None:
    """Under the emulation a mount or UTS namespace is refused, user+pid+net are allowed, and
    the bounding set is empty with no_new_privs: the emulation is not a no-op."""
    shell = "unshare --user --mount true || echo mnt-refused; unshare --user --uts true || echo uts-refused; unshare --user --pid --net --fork true && echo sandbox-ns-ok; grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status"
    root = make_dirs()[0]
    try:
        root.chmod(0o755)
        out = subprocess.run(
            confined(["sh", "-c", shell], readable_filter(root)),
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    finally:
        shutil.rmtree(root)
    assert "mnt-refused" in out and "uts-refused" in out and "sandbox-ns-ok" in out, out
    assert "CapBnd:\t0000000000000000" in out and "NoNewPrivs:\t1" in out, out
    assert "Seccomp:\t2" in out, out


@needs
@pytest.mark.timeout(180)
@pytest.mark.service_user
def test_chromium_keeps_its_sandbox_under_the_units_confinement(
    sim_factory: Any, service_env: ServiceEnv
) -> None:
    """The confined daemon reaches a QR; its browser has no capabilities, no_new_privs and no
    --no-sandbox, its renderers run in their own user and pid namespaces, and the daemon still
    measures the whole browser tree through the hidepid /proc."""
    sim = sim_factory()
    root = make_dirs()[0]
    root.chmod(0o755)
    run, state = root / "run-unit", root / "state-unit"
    for d in (run, state):
        d.mkdir(mode=0o700)
        os.chown(d, NOBODY, NOBODY)
    cfg = root / "wasupd.toml"
    cfg.write_text(
        f'[daemon]\nsocket_group = ""\n[browser]\nurl = "{sim.url}"\n'
        f'[profiles]\nkey_file = "{state}/profile.key"\n[limits]\ncheck_interval = 1.0\n'
    )
    generate_key_file(state / "profile.key")
    os.chown(state / "profile.key", NOBODY, NOBODY)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(state),
        "RUNTIME_DIRECTORY": str(run),
        "STATE_DIRECTORY": str(state),
    }
    sock = run / "wasupd.sock"
    cmd = confined([*service_env.wasupd, "--config", str(cfg)], readable_filter(root))
    with logged_daemon(cmd, env, root / "daemon.log", sock):
        socket_call(sock, "session.create", name="svc")
        info = await_qr(sock, "svc", "a QR from the confined daemon")
        pid = info["pid"]
        browser = psutil.Process(pid)
        assert "--no-sandbox" not in browser.cmdline()
        assert status_field(pid, "CapBnd") == "0000000000000000"
        assert status_field(pid, "NoNewPrivs") == "1"
        tree = browser.children(recursive=True)
        sandboxed = [p for p in tree if ns(p.pid, "user") != ns(pid, "user")]
        assert sandboxed, "no process of the browser runs in its own user namespace"
        assert all(ns(p.pid, "pid") != ns(pid, "pid") for p in sandboxed)
        assert "sandbox_disabled" not in (root / "daemon.log").read_text()

        def measured() -> float:
            text: str = socket_call(sock, "metrics.get")["text"]
            for line in text.splitlines():
                if line.startswith('wasupd_session_processes{session="svc"}'):
                    return float(line.split()[-1])
            return 0.0

        eventually(lambda: measured() > len(sandboxed), 30, "the daemon measuring the tree")
    eventually(lambda: not psutil.pid_exists(pid), 10, "the browser reaped")
    subprocess.run(["rm", "-rf", str(root)], check=True)
