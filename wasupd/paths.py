"""Default filesystem locations: system paths for root, XDG paths for everyone else.

`wasupctl` uses the same rules (`default_socket`) so that a user's CLI finds that user's daemon.
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "wasupd"


def is_root() -> bool:
    """True when running with euid 0, which selects the system-wide paths of DESIGN.md."""
    return os.geteuid() == 0


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "")
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def config_dir() -> Path:
    """`/etc/wasupd` for root, `$XDG_CONFIG_HOME/wasupd` otherwise."""
    return Path("/etc") / APP if is_root() else _xdg("XDG_CONFIG_HOME", ".config") / APP


def runtime_dir() -> Path:
    """`/run/wasupd` for root, `$XDG_RUNTIME_DIR/wasupd` otherwise (falling back to /tmp)."""
    if is_root():
        return Path("/run") / APP
    value = os.environ.get("XDG_RUNTIME_DIR", "")
    if value and os.path.isabs(value):
        return Path(value) / APP
    return Path("/tmp") / f"{APP}-{os.getuid()}"


def state_dir() -> Path:
    """`/var/lib/wasupd` for root, `$XDG_STATE_HOME/wasupd` otherwise."""
    return Path("/var/lib") / APP if is_root() else _xdg("XDG_STATE_HOME", ".local/state") / APP


def default_config_file() -> Path:
    """The config file read when neither `--config` nor `WASUPD_CONFIG` is given."""
    return config_dir() / "wasupd.toml"


def default_socket() -> Path:
    """The control socket path both the daemon and `wasupctl` default to."""
    return runtime_dir() / "wasupd.sock"


def default_key_file() -> Path:
    """The profile key file used when `profiles.key_file` is empty and no systemd credential exists."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY", "")
    if creds and (Path(creds) / "profile-key").exists():
        return Path(creds) / "profile-key"
    return config_dir() / "profile.key"
