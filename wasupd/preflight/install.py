"""The install checks: the daemon's user can run this interpreter and read this wasupd."""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from wasupd.config import Config
from wasupd.paths import APP
from wasupd.preflight.findings import Finding

# The file that makes `import wasupd` work: what the daemon's user must be able to read.
PACKAGE = Path(__file__).resolve().parents[1] / "__init__.py"
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
