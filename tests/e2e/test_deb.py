"""The Debian package, end to end on this machine: `packaging/build-deb.sh` builds it, lintian
passes it, `dpkg -i` installs it, the service user's `wasupd check` is all OK but what needs a
booted systemd, the installed daemon started the way the unit starts it reaches a QR against the
simulator, and `dpkg --purge` leaves no file of the package, no state and no process behind."""

from __future__ import annotations

import contextlib
import gzip
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers.daemon import socket_answers
from tests.helpers.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
USER = "wasupd"
UNIT_DIRS = {"/run/wasupd": 0o750, "/var/lib/wasupd": 0o700}
# Without a booted systemd there is no /run/wasupd until the test makes it as the unit would.
NEEDS_SYSTEMD = {"runtime dir", "socket dir"}

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("dpkg-deb") is None,
        reason="installs a package: needs root on Debian",
    ),
    pytest.mark.timeout(900),
]


def run(*argv: str, timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, its output as text, failing the test with its output if it fails."""
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    assert out.returncode == 0, f"{argv}: {out.stdout[-3000:]}{out.stderr[-3000:]}"
    return out


def installed() -> bool:
    """Whether a wasupd package is installed (or half installed) on this machine."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", "wasupd"], capture_output=True, text=True
    )
    return out.returncode == 0 and "not-installed" not in out.stdout


def user_exists() -> bool:
    """Whether the service user exists."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package built from this tree."""
    if installed():
        pytest.skip("a wasupd package is installed here already; the test would purge it")
    out = tmp_path_factory.mktemp("deb")
    path = Path(run(str(ROOT / "packaging/build-deb.sh"), str(out), timeout=600).stdout.split()[-1])
    assert path.name.startswith("wasupd_") and path.suffix == ".deb"
    return path


def test_lintian_passes_the_package(deb: Path) -> None:
    """lintian finds no error or warning (the overrides it honours each say why)."""
    if shutil.which("lintian") is None:
        pytest.skip("lintian is not installed (scripts/system-deps.sh installs it)")
    out = subprocess.run(
        ["lintian", "--fail-on", "error,warning", str(deb)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    tags = [ln for ln in out.stdout.splitlines() if ln[:2] in ("E:", "W:")]
    assert out.returncode == 0 and not tags, out.stdout[-3000:]


@pytest.fixture
def installed_package(deb: Path) -> Iterator[list[str]]:
    """The package installed; yields its file list. Afterwards the machine is as it was: purged,
    and the service user removed if the package created it."""
    had_user = user_exists()
    try:
        run("dpkg", "-i", str(deb))
        yield run("dpkg-query", "-L", "wasupd").stdout.splitlines()
    finally:
        if installed():
            subprocess.run(["dpkg", "--purge", "wasupd"], capture_output=True, timeout=120)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree("/run/wasupd")
        if not had_user and user_exists():
            subprocess.run(["userdel", USER], capture_output=True, timeout=30)
            subprocess.run(["groupdel", USER], capture_output=True, timeout=30)


def ctl(*argv: str) -> str:
    """The installed wasupctl, as root, on the system socket."""
    return run("/usr/bin/wasupctl", *argv, timeout=60, env={"PATH": "/usr/bin:/bin"}).stdout


def service_processes(uid: int) -> list[psutil.Process]:
    """Live processes of the service user."""
    return [
        p
        for p in psutil.process_iter(["uids", "status"])
        if p.info["uids"] and p.info["uids"].real == uid and p.info["status"] != "zombie"
    ]


def test_install_check_qr_and_purge(installed_package: list[str], sim_factory: Any) -> None:
    """What the package puts in place works, and purge takes all of it away again."""
    files = installed_package
    for must in (
        "/usr/bin/wasupd",
        "/usr/bin/wasupctl",
        "/etc/wasupd/wasupd.toml",
        "/lib/systemd/system/wasupd.service",
        "/lib/systemd/system/wasupd-backup.timer",
        "/usr/lib/sysusers.d/wasupd.conf",
        "/usr/lib/tmpfiles.d/wasupd.conf",
        "/usr/lib/sysctl.d/60-wasupd.conf",
        "/usr/share/man/man1/wasupd.1.gz",
        "/usr/share/man/man1/wasupctl.1.gz",
        "/usr/share/bash-completion/completions/wasupctl",
        "/usr/share/zsh/vendor-completions/_wasupctl",
        "/usr/share/doc/wasupd/README.md",
        "/usr/share/doc/wasupd/docs/operations.md",
    ):
        assert must in files, must
    conffiles = Path("/var/lib/dpkg/info/wasupd.conffiles").read_text().split()
    assert conffiles == ["/etc/wasupd/wasupd.toml"]
    assert Path("/opt/wasupd/pyvenv.cfg").read_text().startswith("home = /usr/bin")
    assert Path("/opt/wasupd/bin/python3").resolve().is_relative_to("/usr/bin")
    man = gzip.decompress(Path("/usr/share/man/man1/wasupctl.1.gz").read_bytes()).decode()
    assert ".SS session create" in man and "\\-\\-phone" in man
    assert (
        "complete -o default -F"
        in Path("/usr/share/bash-completion/completions/wasupctl").read_text()
    )
    assert Path("/usr/share/zsh/vendor-completions/_wasupctl").read_text().startswith("#compdef")

    svc = pwd.getpwnam(USER)
    key = Path("/etc/wasupd/profile.key")
    assert key.stat().st_mode & 0o777 == 0o600 and key.stat().st_uid == svc.pw_uid
    assert "/etc/wasupd/profile.key" not in files  # made on this host, never replaced
    assert Path("/var/lib/wasupd/profiles").stat().st_uid == svc.pw_uid

    # What systemd would make at start: RuntimeDirectory= and the key as a credential.
    run_dir = Path("/run/wasupd")
    run_dir.mkdir(mode=0o750)
    os.chown(run_dir, svc.pw_uid, svc.pw_gid)
    creds = run_dir / ".creds"
    creds.mkdir(mode=0o700)
    shutil.copy(key, creds / "profile-key")
    for p in (creds, creds / "profile-key"):
        os.chown(p, svc.pw_uid, svc.pw_gid)

    check = subprocess.run(
        ["runuser", "-u", USER, "--", "wasupd", "check"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert check.returncode == 0, check.stdout + check.stderr
    for line in check.stdout.splitlines():
        what = line[5:].split(":", 1)[0]
        assert line.startswith("OK ") or what in NEEDS_SYSTEMD, check.stdout

    sim = sim_factory()
    cfg = Path("/etc/wasupd/wasupd.toml")
    cfg.write_text(
        cfg.read_text().replace('url = "https://web.whatsapp.com/"', f'url = "{sim.url}"', 1)
    )
    assert sim.url in cfg.read_text()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/var/lib/wasupd",
        "CONFIGURATION_DIRECTORY": "/etc/wasupd",
        "RUNTIME_DIRECTORY": str(run_dir),
        "STATE_DIRECTORY": "/var/lib/wasupd",
        "CREDENTIALS_DIRECTORY": str(creds),
    }
    as_unit = ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", "--no-new-privs"]
    daemon = subprocess.Popen(
        [*as_unit, "--bounding-set=-all", "/usr/bin/wasupd"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd="/",
    )
    sock = run_dir / "wasupd.sock"
    try:
        eventually(
            lambda: daemon.poll() is None and socket_answers(sock), 30, "the installed daemon"
        )
        ctl("session", "create", "pkg", "--no-wait")
        eventually(
            lambda: '"state": "qr"' in ctl("--json", "session", "show", "pkg"),
            90,
            "a QR from the installed daemon",
        )
        assert ctl("qr", "pkg", "--format", "raw").strip()
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err[-3000:]
    eventually(lambda: not service_processes(svc.pw_uid), 15, "no process of the service user")

    purge = run("dpkg", "--purge", "wasupd", timeout=120)
    assert "purged /var/lib/wasupd" in purge.stdout
    left = [f for f in files if os.path.lexists(f) and not Path(f).is_dir()]
    assert not left, left
    left_dirs = [
        f
        for f in files
        if f.startswith(("/opt/wasupd", "/etc/wasupd", "/usr/share/doc/wasupd"))
        and os.path.lexists(f)
    ]
    assert not left_dirs, left_dirs
    for state in ("/var/lib/wasupd", "/run/wasupd", "/etc/wasupd"):
        assert not os.path.lexists(state), state
