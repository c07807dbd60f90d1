"""`wasupd check`: a real process on real files says what would stop the daemon, and exits 1."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.helpers.daemon import base_config, make_dirs
from tests.helpers.postgres import PASSWORD, PgServer
from tests.helpers.service_env import ServiceEnv
from wasupd.profiles import archive
from wasupd.profiles.keys import Keyring, generate_key_file
from wasupd.store.db import SCHEMA_VERSION, open_database
from wasupd.store.sessions import SessionRepo

WASUPD = [sys.executable, "-m", "wasupd.daemon"]


def setup(tmp_path: Path, **sections: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """A config under `tmp_path` with a valid key and no socket group; (config file, config)."""
    runtime, state = tmp_path / "run", tmp_path / "state"
    cfg = base_config(runtime, state, **sections)
    key = Path(cfg["profiles"]["key_file"])
    if not key.exists():
        generate_key_file(key)
    path = tmp_path / "wasupd.toml"
    path.write_text(tomli_w.dumps(cfg))
    return path, cfg


def check(config: Path, python: Path | None = None) -> tuple[int, dict[str, str]]:
    """Run `wasupd check` (with `python`, else this interpreter); its exit status and
    {what: "LEVEL detail"} per line."""
    # -P: `-m` would import from the cwd (this checkout) first.
    wasupd = [str(python), "-P", "-m", "wasupd.daemon"] if python else WASUPD
    out = subprocess.run(
        [*wasupd, "--config", str(config), "check"], capture_output=True, text=True, timeout=60
    )
    lines: dict[str, str] = {}
    for line in out.stdout.splitlines():
        level, rest = line.split(maxsplit=1)
        what, detail = rest.split(": ", 1)
        lines[what] = f"{level} {detail}"
    return out.returncode, lines


def test_a_ready_host_passes_and_names_what_it_found(tmp_path: Path) -> None:
    """Every line OK (the sandbox may warn as root), the Chromium version shown, exit 0."""
    config, cfg = setup(tmp_path)
    code, lines = check(config)
    assert code == 0, lines
    assert lines["browser (full)"].startswith("OK") and "Chromium" in lines["browser (full)"]
    assert (
        lines["profile key"].startswith("OK")
        and cfg["profiles"]["key_file"] in lines["profile key"]
    )
    assert lines["state dir"] == f"OK {tmp_path / 'state'} will be created at first start"
    assert lines["database"].startswith("OK") and "created at first start" in lines["database"]
    assert "socket group" not in lines  # none configured
    expected = "WARN" if os.geteuid() == 0 else "OK"
    assert lines["sandbox"].startswith(expected), lines["sandbox"]
    assert not (tmp_path / "state").exists(), "check must not create anything"
    (tmp_path / "state").mkdir()
    assert check(config)[1]["state dir"] == f"OK {tmp_path / 'state'}"


def test_missing_and_loose_keys_fail_with_the_fix(tmp_path: Path) -> None:
    """No key -> keygen named; a group-readable key -> chmod 600 named; both exit 1."""
    config, cfg = setup(tmp_path)
    key = Path(cfg["profiles"]["key_file"])
    key.chmod(0o640)
    code, lines = check(config)
    assert code == 1 and lines["profile key"].startswith("FAIL")
    assert f"chmod 600 {key}" in lines["profile key"]
    key.unlink()
    code, lines = check(config)
    assert code == 1 and f"wasupd keygen {key}" in lines["profile key"]


@pytest.mark.service_user
def test_a_users_missing_key_warns_it_will_be_created_unless_something_is_sealed(
    service_env: ServiceEnv,
) -> None:
    """A user's own daemon (here `nobody`, or ourselves when not root) with no key: WARN that
    it is created at first start, exit 0; with a sealed profile present: FAIL naming keygen."""
    root = make_dirs()[0]
    try:
        config, cfg = setup(root)
        key = Path(cfg["profiles"]["key_file"])
        key.unlink()
        command = [*WASUPD, "--config", str(config), "check"]
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "nobody:nogroup", str(root)], check=True)
            as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
            command = [*as_user, *service_env.wasupd, "--config", str(config), "check"]
        fresh = subprocess.run(command, capture_output=True, text=True, timeout=60)
        (root / "state" / "profiles").mkdir()
        (root / "state" / "profiles" / "old.wasup").write_bytes(b"sealed")
        os.chown(root / "state" / "profiles", os.stat(root).st_uid, -1)
        sealed = subprocess.run(command, capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(root)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert f"WARN profile key: {key} will be created at first start; keep a copy" in fresh.stdout
    assert sealed.returncode == 1, sealed.stdout + sealed.stderr
    assert f"FAIL profile key: profile key {key} does not exist" in sealed.stdout
    assert f"`wasupd keygen {key}`" in sealed.stdout


def test_broken_browsers_fail(tmp_path: Path) -> None:
    """A path that is not executable, and a browser whose --version fails, each named."""
    config, _ = setup(tmp_path, browser={"executable": str(tmp_path / "nope")})
    code, lines = check(config)
    assert code == 1 and "is not an executable file" in lines["browser (full)"]
    broken = tmp_path / "broken-chromium"
    broken.write_text("#!/bin/sh\necho 'cannot open shared object' >&2\nexit 127\n")
    broken.chmod(0o755)
    config, _ = setup(tmp_path, browser={"executable": str(broken)})
    code, lines = check(config)
    assert code == 1
    assert lines["browser (full)"] == f"FAIL {broken} --version failed: cannot open shared object"


def test_stored_sessions_add_the_builds_they_ask_for(tmp_path: Path) -> None:
    """A session created with build = headless-shell gets its own browser line."""
    config, cfg = setup(tmp_path)

    async def create() -> None:
        db = await open_database(Path(cfg["daemon"]["state_dir"]) / "wasupd.db")
        try:
            repo = SessionRepo(db)
            await repo.create("lean", phone=None, options={"build": "headless-shell"}, now=1.0)
            await repo.create("weird", phone=None, options={"build": "firefox"}, now=1.0)
        finally:
            await db.close()

    (tmp_path / "state").mkdir()
    asyncio.run(create())
    code, lines = check(config)
    assert lines["database"] == (
        f"OK {tmp_path / 'state' / 'wasupd.db'} (schema {SCHEMA_VERSION}, 2 sessions)"
    )
    assert "Chromium" in lines["browser (headless-shell)"]
    assert lines["browser (firefox)"].startswith("FAIL") and code == 1


def test_newer_database_fails_and_is_left_alone(tmp_path: Path) -> None:
    """A database from a newer wasupd: upgrade named, the file byte-identical afterwards."""
    config, _ = setup(tmp_path)
    (tmp_path / "state").mkdir()
    db = tmp_path / "state" / "wasupd.db"
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.close()
    before = db.read_bytes()
    code, lines = check(config)
    assert code == 1 and "written by a newer wasupd; upgrade wasupd" in lines["database"]
    assert db.read_bytes() == before


def test_postgresql_store_is_checked_over_the_connection(
    tmp_path: Path, postgres_server: PgServer, postgres_db: str
) -> None:
    """With `[store] url`: OK with the schema and the sessions' builds once the daemon's store
    is there; a FAIL saying what to check for a wrong password or no server, the password never
    shown; a newer schema fails."""
    config, _ = setup(tmp_path, store={"url": postgres_db})
    code, lines = check(config)
    place = postgres_db.replace(f":{PASSWORD}", "")
    assert (
        lines["database"]
        == f"OK {place} (schema 0, upgraded to {SCHEMA_VERSION} at start, 0 sessions)"
    )

    async def create() -> None:
        async with await open_database(tmp_path / "unused.db", postgres_db) as db:
            await SessionRepo(db).create(
                "lean", phone=None, options={"build": "headless-shell"}, now=1.0
            )

    asyncio.run(create())
    code, lines = check(config)
    assert lines["database"] == f"OK {place} (schema {SCHEMA_VERSION}, 1 sessions)"
    assert "Chromium" in lines["browser (headless-shell)"]

    dbname = postgres_db.rsplit("/", 1)[1]
    for url, hint in (
        (postgres_server.url(dbname, password="wrong-pw"), "check the user name and password"),
        (f"postgresql://u:wrong-pw@127.0.0.1:{unused_port()}/x", "runs and accepts connections"),
    ):
        config, _ = setup(tmp_path, store={"url": url})
        code, lines = check(config)
        assert code == 1 and lines["database"].startswith("FAIL cannot connect to"), lines
        assert hint in lines["database"] and "wrong-pw" not in lines["database"]

    with postgres_server.admin(dbname) as conn:
        conn.execute("UPDATE wasupd_schema SET version = version + 1")
    config, _ = setup(tmp_path, store={"url": postgres_db})
    code, lines = check(config)
    assert code == 1 and "written by a newer wasupd; upgrade wasupd" in lines["database"]


def unused_port() -> int:
    """A local TCP port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unusable_directories_fail_and_a_missing_group_warns(tmp_path: Path) -> None:
    """A state dir that is a file fails; an unknown socket group only warns (exit 0 otherwise)."""
    (tmp_path / "state-file").write_text("")
    config, _ = setup(tmp_path, daemon={"state_dir": str(tmp_path / "state-file")})
    code, lines = check(config)
    assert code == 1 and lines["state dir"].endswith("exists and is not a directory")
    config, _ = setup(tmp_path, daemon={"socket_group": "no-such-group-wasupd"})
    code, lines = check(config)
    assert code == 0, lines
    assert lines["socket group"].startswith("WARN daemon.socket_group: no group")


@pytest.mark.skipif(os.geteuid() != 0, reason="Chromium refuses its sandbox only as root")
def test_sandbox_on_as_root_fails(tmp_path: Path) -> None:
    """browser.sandbox = on where it cannot work: the daemon's own error, ahead of time."""
    config, _ = setup(tmp_path, browser={"sandbox": "on"})
    code, lines = check(config)
    assert code == 1 and "run wasupd as its own non-root user" in lines["sandbox"]


@pytest.mark.service_user
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the check as another user")
def test_as_an_unprivileged_user_missing_system_dirs_only_warn(service_env: ServiceEnv) -> None:
    """As `nobody`: dirs it cannot create are left to systemd (WARN), its own key is OK; a
    state dir it may not enter is a FAIL that says to run the check as the daemon's user."""
    root = make_dirs()[0]  # under /tmp: pytest's own temp root is private to root
    try:
        root.chmod(0o755)
        config, cfg = setup(
            root,
            daemon={
                "state_dir": "/var/lib/wasupd-check-test",
                "runtime_dir": "/run/wasupd-ct",
                "socket": "/run/wasupd-ct/wasupd.sock",
            },
        )
        os.chown(cfg["profiles"]["key_file"], 65534, -1)
        config.chmod(0o644)
        nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        out = subprocess.run(
            [*nobody, *service_env.wasupd, "--config", str(config), "check"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        private = root / "private-state"  # root's 0700 dir, as the unit's StateDirectoryMode
        private.mkdir(mode=0o700)
        config2, _ = setup(root, daemon={"state_dir": str(private)})
        config2.chmod(0o644)
        denied = subprocess.run(
            [*nobody, *service_env.wasupd, "--config", str(config2), "check"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(root)
    assert denied.returncode == 1 and "Traceback" not in denied.stderr, denied.stderr
    assert "Permission denied; run the check as the daemon's user" in denied.stdout
    assert out.returncode == 0, out.stdout + out.stderr
    assert "WARN state dir: /var/lib/wasupd-check-test does not exist" in out.stdout
    assert "the systemd unit creates it at start" in out.stdout
    assert "OK   profile key" in out.stdout
    assert "root" not in out.stdout.split("sandbox: ", 1)[1].splitlines()[0]


@pytest.mark.service_user
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to check for another user")
def test_an_install_the_service_user_cannot_reach_fails(service_env: ServiceEnv) -> None:
    """Root checking for the owner of the state dir: an interpreter and a wasupd under a 0700
    dir (a venv or pyenv under /root, a checkout in a `mktemp -d`) each FAIL and say how to
    install instead; the same check from a venv that user can reach passes."""
    root = make_dirs()[0]  # mkdtemp: 0700, like /root
    try:
        config, cfg = setup(root)
        os.chown(cfg["daemon"]["state_dir"], 65534, -1)  # nobody is the service user
        private = root / "venv"
        subprocess.run(
            ["/usr/bin/python3", "-m", "venv", "--without-pip", str(private)],
            check=True,
            timeout=60,
        )
        # This wasupd from a copy in the private dir, its dependencies from the service env.
        shutil.copytree(service_env.site_packages / "wasupd", root / "src" / "wasupd")
        site = next(private.glob("lib/python3.*/site-packages"))
        (site / "deps.pth").write_text(f"{root / 'src'}\n{service_env.site_packages}\n")
        code, lines = check(config, private / "bin" / "python")
        reachable_code, reachable = check(config, service_env.python)
    finally:
        shutil.rmtree(root)
    fix = "/usr/bin/python3 -m venv /opt/wasupd && /opt/wasupd/bin/pip install /path/to/wasupd"
    assert code == 1, lines
    for what in ("interpreter", "package"):
        assert lines[what].startswith("FAIL"), lines[what]
        assert (
            f"the daemon's user nobody (uid 65534) may not enter {root} (drwx------"
            in (lines[what])
        )
        assert lines[what].endswith(fix)
    assert reachable_code == 0, reachable
    python = f"{service_env.python} -> {service_env.python.resolve()}"
    assert reachable["interpreter"] == f"OK {python}, usable by nobody (uid 65534)"
    assert reachable["package"].startswith(f"OK {service_env.site_packages / 'wasupd'}")


def test_a_fleet_host_checks_its_clock_against_the_database(
    tmp_path: Path, postgres_db: str
) -> None:
    """With `[store] url`: the host id, the clock skew against the database (this machine's
    own server: well under a second), and the shared profiles directory are checked."""
    shared = tmp_path / "shared"
    shared.mkdir()
    config, _ = setup(
        tmp_path,
        store={"url": postgres_db},
        daemon={"host_id": "wa-7"},
        fleet={"profiles_dir": str(shared)},
    )
    code, lines = check(config)
    assert lines["fleet host"] == "OK wa-7 (daemon.host_id)"
    assert lines["clock skew"].startswith("OK 0.0") and "the database" in lines["clock skew"]
    assert lines["shared profiles dir"] == f"OK {shared}"
    assert lines["fleet key"] == f"OK the 0 sealed profiles in {shared} open with this key"
    # Profiles another host sealed with a key this host lacks: a host that would claim
    # sessions and fail to unseal them.
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("x")
    other = Keyring.of(b"\x07" * 32)
    for name in ("alice", "bob"):
        archive.seal_dir(tmp_path / "src", shared / f"{name}{archive.SUFFIX}", other, name)
    code, lines = check(config)
    assert code == 1 and lines["fleet key"].startswith(
        f"FAIL 2 of the 2 sealed profiles in {shared} need a key this host does not hold"
        f" (key {other.current_id}: alice, bob)"
    ), lines["fleet key"]
    config, _ = setup(tmp_path, store={"url": f"postgresql://u:pw@127.0.0.1:{unused_port()}/x"})
    code, lines = check(config)
    assert code == 1 and lines["clock skew"].startswith("FAIL cannot connect to")
