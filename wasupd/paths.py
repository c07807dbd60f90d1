"""Default filesystem locations, decided in this order:

1. the directories systemd made for the unit (`RuntimeDirectory=`, `StateDirectory=`,
   `ConfigurationDirectory=` export `$RUNTIME_DIRECTORY`, `$STATE_DIRECTORY`,
   `$CONFIGURATION_DIRECTORY`): the shipped unit runs the daemon as the unprivileged `wasupd`
   user, and it must still use /run/wasupd, /var/lib/wasupd and /etc/wasupd;
2. the system paths (/etc/wasupd, /run/wasupd, /var/lib/wasupd) for root, and for the service user itself (the owner of
   /var/lib/wasupd), so that `runuser -u wasupd -- wasupd check|restore` looks where the
   service does;
3. the XDG paths for everyone else (a user's own daemon).

`wasupctl` uses the same rules (`client_socket`), and falls back to the system daemon's socket
when the user runs no daemon of their own, which is the case of a socket-group member.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP = "wasupd"
SYSTEM_CONFIG_DIR = Path("/etc") / APP
SYSTEM_RUNTIME_DIR = Path("/run") / APP
SYSTEM_STATE_DIR = Path("/var/lib") / APP
SOCKET_NAME = "wasupd.sock"


def is_root() -> bool:
    """True when running with euid 0."""
    return os.geteuid() == 0


def system_mode(state_root: Path = SYSTEM_STATE_DIR) -> bool:
    """True for root and for the service user (the owner of `state_root`): they default to
    the system paths."""
    if is_root():
        return True
    try:
        return state_root.stat().st_uid == os.geteuid()
    except OSError:
        return False


def _from_systemd(var: str) -> Path | None:
    # Several directories of one kind arrive colon-separated; ours is the first.
    first = os.environ.get(var, "").split(":")[0]
    return Path(first) if first and os.path.isabs(first) else None


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "")
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def config_dir() -> Path:
    """`$CONFIGURATION_DIRECTORY`, `/etc/wasupd` (system), or `$XDG_CONFIG_HOME/wasupd`."""
    found = _from_systemd("CONFIGURATION_DIRECTORY")
    if found:
        return found
    return SYSTEM_CONFIG_DIR if system_mode() else _xdg("XDG_CONFIG_HOME", ".config") / APP


def runtime_dir() -> Path:
    """`$RUNTIME_DIRECTORY`, `/run/wasupd` (system), or `$XDG_RUNTIME_DIR/wasupd` (falling back
    to /tmp)."""
    found = _from_systemd("RUNTIME_DIRECTORY")
    if found:
        return found
    if system_mode():
        return SYSTEM_RUNTIME_DIR
    value = os.environ.get("XDG_RUNTIME_DIR", "")
    if value and os.path.isabs(value):
        return Path(value) / APP
    return Path("/tmp") / f"{APP}-{os.getuid()}"


def state_dir() -> Path:
    """`$STATE_DIRECTORY`, `/var/lib/wasupd` (system), or `$XDG_STATE_HOME/wasupd`."""
    found = _from_systemd("STATE_DIRECTORY")
    if found:
        return found
    return SYSTEM_STATE_DIR if system_mode() else _xdg("XDG_STATE_HOME", ".local/state") / APP


def default_config_file() -> Path:
    """The config file read when neither `--config` nor `WASUPD_CONFIG` is given."""
    return config_dir() / "wasupd.toml"


def default_socket() -> Path:
    """The control socket a daemon binds by default."""
    return runtime_dir() / SOCKET_NAME


def client_socket(system_socket: Path = SYSTEM_RUNTIME_DIR / SOCKET_NAME) -> Path:
    """The socket `wasupctl` uses by default: this user's own daemon's when it exists in a
    directory only this user controls, else the system daemon's (a socket-group member runs no
    daemon of their own). Without `$XDG_RUNTIME_DIR` the own path is under /tmp, where another
    user could plant a socket to catch messages: such a socket is not trusted."""
    own = default_socket()
    if own == system_socket or (_exists(own, unknown=False) and _private_dir(own.parent)):
        return own
    # /run/wasupd is 0750: for a user not yet in the group, connecting says why.
    return system_socket if _exists(system_socket, unknown=True) else own


def _private_dir(path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _exists(path: Path, *, unknown: bool) -> bool:
    try:
        return path.exists()
    except OSError:  # a directory on the way we may not search
        return unknown


def default_key_file() -> Path:
    """The profile key file used when `profiles.key_file` is empty and no systemd credential exists."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY", "")
    if creds and (Path(creds) / "profile-key").exists():
        return Path(creds) / "profile-key"
    return config_dir() / "profile.key"


# -- the layout inside the state and runtime directories -------------------------------------
# One home for every directory name the daemon, `wasupd restore` and `wasupd check` agree on.

ARCHIVE_SUFFIX = ".wasup"


@dataclass(frozen=True, slots=True)
class StateLayout:
    """What lives under the state directory (`daemon.state_dir`, /var/lib/wasupd)."""

    root: Path
    shared_archives: Path | None = None  # `fleet.profiles_dir`: every host's sealed profiles

    @property
    def database(self) -> Path:
        """The SQLite database."""
        return self.root / "wasupd.db"

    @property
    def archives(self) -> Path:
        """Sealed profile archives, one `<session>.wasup` each (in a fleet, the directory
        every host shares)."""
        return self.shared_archives or self.root / "profiles"

    def archive(self, session: str) -> Path:
        """The sealed archive of `session`."""
        return self.archives / f"{session}{ARCHIVE_SUFFIX}"

    @property
    def imports(self) -> Path:
        """Archives being uploaded by `session.import`."""
        return self.root / "imports"

    @property
    def exports(self) -> Path:
        """Archives pinned while `session.export` streams them."""
        return self.root / "exports"

    @property
    def media(self) -> Path:
        """The content-addressed media store: `<sha256[:2]>/<sha256>`, one file per content."""
        return self.root / "media"

    @property
    def uploads(self) -> Path:
        """Files being uploaded by `media.upload`, before `message.send` takes them."""
        return self.root / "uploads"

    @property
    def backups(self) -> Path:
        """Where `daemon.backup` writes `wasupd-<UTC time>` directories."""
        return self.root / "backups"

    def replaced(self) -> list[Path]:
        """The `replaced-<time>` directories a restore moved the old state into, oldest first."""
        return sorted(self.root.glob("replaced-*"))


@dataclass(frozen=True, slots=True)
class RuntimeLayout:
    """What lives under the runtime directory (`daemon.runtime_dir`, /run/wasupd)."""

    root: Path

    @property
    def live_profiles(self) -> Path:
        """Decrypted profiles of running sessions, one directory each (0700)."""
        return self.root / "profiles"

    def live_profile(self, session: str) -> Path:
        """The live profile directory of `session`."""
        return self.live_profiles / session

    @property
    def browser_logs(self) -> Path:
        """Chromium's stderr, one file per session."""
        return self.root / "logs"
