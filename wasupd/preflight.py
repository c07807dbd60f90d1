"""`wasupd check`: what would stop the daemon, or one of its sessions, on this host.

Each check looks at one thing the daemon depends on and says what to do when it is wrong: that
the daemon's user can run this interpreter and read this wasupd, the Chromium builds the config
and the stored sessions ask for, the sandbox, the profile key, the directories, the socket
group, the database version and the open-file limit. It reads, never writes: it can run beside
a live daemon, before `systemctl start`, or from a monitoring job.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import resource
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wasupd.config import Config
from wasupd.errors import BrowserError, KeyUnavailable
from wasupd.paths import APP, system_mode
from wasupd.profiles.firstkey import KEEP_A_COPY, missing, refusal
from wasupd.profiles.keys import load_keyring
from wasupd.rpc.peer import gid_of
from wasupd.store.db import SCHEMA_VERSION
from wasupd.supervision.launcher import CANDIDATES, find_executable, sandbox_available

Level = Literal["ok", "warn", "fail"]

VERSION_TIMEOUT = 20.0  # `chromium --version` on a cold disk
# What one Chromium tree holds open at its peak (measured: about 400 for the full build).
FDS_PER_SESSION = 400


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict: `what` was checked, `detail` says what was found or what to do."""

    level: Level
    what: str
    detail: str


def run_checks(config: Config, config_file: str) -> list[Finding]:
    """Every check, in the order an operator would fix them."""
    findings = [Finding("ok", "config", config_file)]
    for check in CHECKS:
        findings.extend(check(config))
    return findings


def exit_code(findings: list[Finding]) -> int:
    """0 when nothing failed (warnings allowed), 1 otherwise."""
    return 1 if any(f.level == "fail" for f in findings) else 0


def render(findings: list[Finding]) -> str:
    """One line per finding: `LEVEL what: detail`."""
    return "".join(f"{f.level.upper():<4} {f.what}: {f.detail}\n" for f in findings)


def _stored_builds(config: Config) -> set[str]:
    """Builds that stored sessions override the default with (empty when there is no database)."""
    db = config.state_path / "wasupd.db"
    if not db.exists():
        return set()
    with _read_only(db) as conn:
        rows = conn.execute("SELECT options FROM sessions").fetchall()
    builds = set()
    for (options,) in rows:
        build = json.loads(options or "{}").get("build")
        if build:
            builds.add(str(build))
    return builds


def _read_only(path: Path) -> contextlib.closing[sqlite3.Connection]:
    """A read-only SQLite connection, closed when the `with` block ends."""
    return contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0))


# The file that makes `import wasupd` work: what the daemon's user must be able to read.
PACKAGE = Path(__file__).resolve().parent / "__init__.py"
INSTALL_FIX = (
    "install wasupd into a venv made from Debian's Python under /opt, readable by that user:"
    " /usr/bin/python3 -m venv /opt/wasupd && /opt/wasupd/bin/pip install /path/to/wasupd"
)


@dataclass(frozen=True, slots=True)
class Account:
    """A user the install checks are made for, with the groups the kernel would see."""

    name: str
    uid: int
    gids: frozenset[int]

    def __str__(self) -> str:
        return f"{self.name} (uid {self.uid})"


def service_account(config: Config) -> Account:
    """The user the daemon will run as. Not root: this user. Root: the owner of the state dir
    (the unit's `StateDirectory=` makes it the service user), else the `wasupd` user when it
    exists (before the first start), else root itself."""
    if os.geteuid() != 0:
        return _account(os.geteuid())
    with contextlib.suppress(OSError):
        return _account(config.state_path.stat().st_uid)
    try:
        return _account(pwd.getpwnam(APP).pw_uid)
    except KeyError:
        return _account(0)


def _account(uid: int) -> Account:
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:  # a state dir owned by a uid with no passwd entry
        return Account(name=str(uid), uid=uid, gids=frozenset())
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return Account(name=entry.pw_name, uid=uid, gids=frozenset(groups))


def check_install(config: Config) -> Iterator[Finding]:
    """The daemon's user can run this interpreter and read this wasupd. Root can do both from
    anywhere, so an install under a private directory (a checkout or pyenv under /root, any
    `mktemp -d`) works for root and fails only when systemd starts the unit as its user."""
    who = service_account(config)
    if not sys.executable:
        yield Finding("warn", "interpreter", "Python cannot tell its own executable; not checked")
    else:
        yield _reachable("interpreter", who, Path(sys.executable), os.X_OK)
    yield _reachable("package", who, PACKAGE.parent, os.R_OK)


def _reachable(what: str, who: Account, path: Path, mode: int) -> Finding:
    # Both the path as given (a venv's bin/python, a symlink) and where it leads must be usable.
    real = path.resolve()
    shown = str(path) if path == real else f"{path} -> {real}"
    for candidate in dict.fromkeys((path, real)):
        blocked = _first_blocked(candidate, who, mode)
        if blocked:
            return Finding("fail", what, f"{shown}: {blocked}; {INSTALL_FIX}")
    return Finding("ok", what, f"{shown}, usable by {who}")


def _first_blocked(path: Path, who: Account, mode: int) -> str | None:
    """What stops `who` on the way to `path`: entering a directory above it, or `mode` on it.
    A package (`mode` R_OK, `path` its directory) must also be listed, as must the directory
    it is imported from: the import system lists both."""
    steps = {parent: os.X_OK for parent in reversed(path.parents)}
    if mode == os.R_OK:
        steps[path.parent] = os.R_OK | os.X_OK
        steps[path] = os.R_OK | os.X_OK
        steps[path / "__init__.py"] = os.R_OK
    else:
        steps[path] = mode
    for step, bits in steps.items():
        if not _may(step, who, bits):
            return f"the daemon's user {who} may not {_verb(step, bits)} {step}{_mode_of(step)}"
    return None


def _may(path: Path, who: Account, bits: int) -> bool:
    if who.uid == os.geteuid():  # ask the kernel: it also knows ACLs
        return os.access(path, bits, effective_ids=os.access in os.supports_effective_ids)
    # Root checking for the service user: the mode bits as the kernel applies them (no ACLs).
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_uid == who.uid:
        perm = st.st_mode >> 6
    elif st.st_gid in who.gids:
        perm = st.st_mode >> 3
    else:
        perm = st.st_mode
    return perm & bits == bits


def _verb(path: Path, bits: int) -> str:
    if path.is_dir():
        return "list" if bits & os.R_OK else "enter"
    return "read" if bits & os.R_OK else "execute"


def _mode_of(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return ""
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    return f" ({stat.filemode(st.st_mode)}, owner {owner})"


def check_database(config: Config) -> Iterator[Finding]:
    """The database opens and was not written by a newer wasupd."""
    db = config.state_path / "wasupd.db"
    try:
        if not db.exists():
            yield Finding("ok", "database", f"{db} will be created at first start")
            return
    except OSError as exc:  # the state dir is 0700: run the check as the daemon's user
        yield Finding(
            "fail", "database", f"{db}: {exc.strerror}; run the check as the daemon's user"
        )
        return
    try:
        with _read_only(db) as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                yield Finding(
                    "fail",
                    "database",
                    f"{db} has schema version {version}, this wasupd knows up to"
                    f" {SCHEMA_VERSION}: it was written by a newer wasupd; upgrade wasupd",
                )
                return
            count = "SELECT count(*) FROM sessions"
            sessions = int(conn.execute(count).fetchone()[0]) if version else 0
    except sqlite3.Error as exc:
        yield Finding("fail", "database", f"{db} cannot be read: {exc}; restore it from a backup")
        return
    upgrade = f", upgraded to {SCHEMA_VERSION} at start" if version < SCHEMA_VERSION else ""
    yield Finding("ok", "database", f"{db} (schema {version}{upgrade}, {sessions} sessions)")


def check_browsers(config: Config) -> Iterator[Finding]:
    """Each build the config or a stored session asks for is installed and runs."""
    builds: set[str] = {config.browser.build}
    with contextlib.suppress(sqlite3.Error, ValueError, AttributeError, OSError):  # reported below
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


def check_open_files(config: Config) -> Iterator[Finding]:
    """The open-file limit fits `limits.max_sessions` browsers. The hard limit is what counts:
    the daemon raises its soft limit to it at start."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = config.limits.max_sessions * FDS_PER_SESSION
    if hard != resource.RLIM_INFINITY and hard < need:
        yield Finding(
            "warn",
            "open files",
            f"hard limit {hard} is below {need} ({config.limits.max_sessions} sessions x"
            f" {FDS_PER_SESSION}); raise it (LimitNOFILE= in the unit, ulimit -Hn in a shell)",
        )
    else:
        limit = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
        yield Finding("ok", "open files", f"hard limit {limit} (need about {need})")


CHECKS: tuple[Callable[[Config], Iterator[Finding]], ...] = (
    check_install,
    check_browsers,
    check_sandbox,
    check_key,
    check_directories,
    check_socket_group,
    check_database,
    check_open_files,
)
