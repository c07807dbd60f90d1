"""The host checks: Chromium builds, the sandbox, the key, directories, socket group and
database (the host's limits: `limits.py`)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

from wasupd.config import Config
from wasupd.errors import BrowserError, KeyUnavailable, StoreError, WasupError
from wasupd.paths import system_mode
from wasupd.preflight.findings import Finding, Level
from wasupd.profiles import archive
from wasupd.profiles.firstkey import KEEP_A_COPY, missing, refusal
from wasupd.profiles.keys import load_keyring
from wasupd.rpc.peer import gid_of
from wasupd.store.db import SCHEMA_VERSION
from wasupd.store.probe import StoreFacts, postgres_facts, sqlite_facts
from wasupd.supervision.launcher import CANDIDATES, find_executable, sandbox_available

VERSION_TIMEOUT = 20.0  # `chromium --version` on a cold disk


def _facts(config: Config) -> StoreFacts | None:
    """What the store records (None: a SQLite file not created yet). StoreError or
    sqlite3.Error when it cannot be read."""
    if config.store.url:
        return postgres_facts(config.store.url)
    db = config.state.database
    return sqlite_facts(db) if db.exists() else None


def _stored_builds(config: Config) -> set[str]:
    """Builds that stored sessions override the default with (empty when there is no database)."""
    facts = _facts(config)
    builds = set()
    for options in facts.options if facts else []:
        build = json.loads(options or "{}").get("build")
        if build:
            builds.add(str(build))
    return builds


def check_database(config: Config) -> Iterator[Finding]:
    """The database opens (the PostgreSQL server answers and lets us in) and was not written
    by a newer wasupd."""
    where = str(config.state.database)
    try:
        if config.store.url:
            from wasupd.store.backend.postgres import where as postgres_where

            where = postgres_where(config.store.url)  # the URL without its password
        facts = _facts(config)
    except OSError as exc:  # the state dir is 0700: run the check as the daemon's user
        yield Finding(
            "fail", "database", f"{where}: {exc.strerror}; run the check as the daemon's user"
        )
        return
    except StoreError as exc:
        yield Finding("fail", "database", exc.message)
        return
    except sqlite3.Error as exc:
        yield Finding(
            "fail", "database", f"{where} cannot be read: {exc}; restore it from a backup"
        )
        return
    if facts is None:
        yield Finding("ok", "database", f"{where} will be created at first start")
        return
    if facts.version > SCHEMA_VERSION:
        yield Finding(
            "fail",
            "database",
            f"{where} has schema version {facts.version}, this wasupd knows up to"
            f" {SCHEMA_VERSION}: it was written by a newer wasupd; upgrade wasupd",
        )
        return
    upgrade = f", upgraded to {SCHEMA_VERSION} at start" if facts.version < SCHEMA_VERSION else ""
    sessions = len(facts.options)
    yield Finding(
        "ok", "database", f"{where} (schema {facts.version}{upgrade}, {sessions} sessions)"
    )


def check_browsers(config: Config) -> Iterator[Finding]:
    """Each build the config or a stored session asks for is installed and runs."""
    builds: set[str] = {config.browser.build}
    with contextlib.suppress(
        sqlite3.Error, StoreError, ValueError, AttributeError, OSError
    ):  # reported below
        builds |= _stored_builds(config)
    for build in sorted(builds):
        what = f"browser ({build})"
        if build not in CANDIDATES:
            yield Finding("fail", what, f"a stored session asks for unknown build {build!r}")
            continue
        # An explicit executable is what the default build runs; another build is looked up.
        configured = config.browser.executable if build == config.browser.build else ""
        try:
            exe = find_executable(configured, build)
        except BrowserError as exc:
            yield Finding("fail", what, exc.message)
            continue
        yield _version_of(what, exe)


def _version_of(what: str, exe: str) -> Finding:
    try:
        out = subprocess.run(
            [exe, "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Finding("fail", what, f"{exe} --version did not answer in {VERSION_TIMEOUT:.0f} s")
    except OSError as exc:
        return Finding("fail", what, f"{exe} cannot run: {exc.strerror}")
    version = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    if out.returncode != 0 or not version:
        error = out.stderr.strip().splitlines()[-1:] or [f"exit status {out.returncode}"]
        return Finding("fail", what, f"{exe} --version failed: {error[0]}")
    return Finding("ok", what, f"{exe} ({version})")


def check_sandbox(config: Config) -> Iterator[Finding]:
    """Whether Chromium's sandbox will be on, and why not."""
    usable, why = sandbox_available()
    mode = config.browser.sandbox
    if mode == "off":
        yield Finding("warn", "sandbox", "off (browser.sandbox = off): renderers run unconfined")
    elif usable:
        yield Finding("ok", "sandbox", "Chromium's user-namespace sandbox can work")
    elif mode == "on":
        yield Finding(
            "fail",
            "sandbox",
            f"browser.sandbox = on, but it cannot work here: {why}; run wasupd as its own"
            " non-root user, or set browser.sandbox = auto",
        )
    else:
        yield Finding(
            "warn",
            "sandbox",
            f"browsers will run with --no-sandbox: {why}; run wasupd as its own non-root user"
            " (the systemd unit does)",
        )


def check_key(config: Config) -> Iterator[Finding]:
    """The profile key exists, is private and parses, or a user's own daemon will create it at
    first start (`wasupd.profiles.firstkey`)."""
    key_file = Path(config.profiles.key_file)
    try:
        ring = load_keyring(key_file)
    except KeyUnavailable as exc:
        if missing(key_file) and refusal(key_file, config.state_path, system=system_mode()) is None:
            yield Finding(
                "warn", "profile key", f"{key_file} will be created at first start; {KEEP_A_COPY}"
            )
        else:
            yield Finding("fail", "profile key", exc.message)
        return
    older = len(ring.keys) - 1
    extra = f", {older} older key(s) still accepted" if older else ""
    yield Finding("ok", "profile key", f"{ring.source} (current key {ring.current_id}{extra})")


# Leases are measured by the database's clock only; a host's own clock still stamps logs,
# events and message times, which should agree across the fleet.
SKEW_WARN_S = 1.0


def check_fleet(config: Config) -> Iterator[Finding]:
    """With a PostgreSQL store (a fleet host): this host's id, its clock against the
    database's, and the shared profiles directory."""
    if not config.store.url:
        return
    yield Finding("ok", "fleet host", f"{config.daemon.host_id} (daemon.host_id)")
    from wasupd.store.fleet import clock_skew  # psycopg: only a PostgreSQL host needs it

    try:
        skew = clock_skew(config.store.url)
    except StoreError as exc:
        yield Finding("fail", "clock skew", exc.message)
    else:
        level: Level = "ok" if abs(skew) < SKEW_WARN_S else "warn"
        side = "ahead of" if skew >= 0 else "behind"
        fix = "" if level == "ok" else "; run NTP (systemd-timesyncd, chrony) on every host"
        yield Finding(level, "clock skew", f"{abs(skew):.3f} s {side} the database{fix}")
    if config.fleet.profiles_dir:
        shared = Path(config.fleet.profiles_dir)
        yield _directory("shared profiles dir", shared)
        yield from _fleet_key(config, shared)


def _fleet_key(config: Config, shared: Path) -> Iterator[Finding]:
    """Every profile the fleet sealed in `shared` names a key this host holds: a host with
    another key would claim sessions and fail to unseal them. Headers are read without the
    key (which key an archive needs is in the clear)."""
    try:
        ring = load_keyring(Path(config.profiles.key_file))
        paths = sorted(shared.glob(f"*{archive.SUFFIX}"))
    except (WasupError, OSError):
        return  # the key and the directory have their own lines above
    lacking: dict[str, list[str]] = {}
    for path in paths:
        try:
            key = archive.inspect(path).key_id
        except (WasupError, OSError):
            continue  # unreadable here: the daemon reports it when it unseals that one
        if key not in ring.keys:
            lacking.setdefault(key, []).append(path.stem)
    if not lacking:
        yield Finding(
            "ok", "fleet key", f"the {len(paths)} sealed profiles in {shared} open with this key"
        )
        return
    named = "; ".join(
        f"key {key}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
        for key, names in sorted(lacking.items())
    )
    count = sum(len(names) for names in lacking.values())
    yield Finding(
        "fail",
        "fleet key",
        f"{count} of the {len(paths)} sealed profiles in {shared} need a key this host does not"
        f" hold ({named}): copy the fleet's profile key file here (docs/fleet.md, setup)",
    )


def check_directories(config: Config) -> Iterator[Finding]:
    """The state and runtime directories are usable by this user, or can be created."""
    dirs = {config.state_path: "state dir", config.runtime_path: "runtime dir"}
    dirs.setdefault(config.socket_path.parent, "socket dir")
    for path, what in dirs.items():
        yield _directory(what, path)


def _directory(what: str, path: Path) -> Finding:
    try:
        return _usable_directory(what, path)
    except OSError as exc:
        return Finding("fail", what, f"{path}: {exc.strerror}; run the check as the daemon's user")


def _usable_directory(what: str, path: Path) -> Finding:
    if path.is_dir():
        if os.access(path, os.W_OK | os.X_OK):
            return Finding("ok", what, str(path))
        return Finding(
            "fail", what, f"{path} is not writable by uid {os.geteuid()}; fix its owner or mode"
        )
    if path.exists():
        return Finding("fail", what, f"{path} exists and is not a directory")
    parent = next((p for p in path.parents if p.exists()), Path("/"))
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return Finding("ok", what, f"{path} will be created at first start")
    # Not fatal: under systemd, RuntimeDirectory= and StateDirectory= create it at each start.
    return Finding(
        "warn",
        what,
        f"{path} does not exist and {parent} is not writable by uid {os.geteuid()}: the"
        " systemd unit creates it at start; outside systemd, create it for this user",
    )


def check_socket_group(config: Config) -> Iterator[Finding]:
    """The socket group and the allowed groups exist (the daemon starts without them, but then
    only root and its own user can use the socket)."""
    d = config.daemon
    names = [("daemon.socket_group", d.socket_group)] if d.socket_group else []
    names += [("daemon.allow_groups", g) for g in d.allow_groups]
    for key, name in names:
        if gid_of(name) is None:
            yield Finding(
                "warn",
                "socket group",
                f"{key}: no group {name!r}, so only root and the daemon's user can use the"
                " socket; create it (systemd-sysusers) or change the key",
            )
        else:
            yield Finding("ok", "socket group", f"{name} ({key})")
