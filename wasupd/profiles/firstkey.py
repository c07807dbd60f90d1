"""The profile key a user's own daemon creates at its first start, as sshd creates host keys.

A missing key file is created (0600, atomically, by `generate_key_file`) only when no key can
have existed before, that is when all of these hold:

- the daemon is not in system mode (root or the service user, `wasupd.paths.system_mode`):
  there the key is an explicit `wasupd keygen` step of the installation;
- the key is not a systemd credential (systemd owns those files);
- nothing in the state dir was sealed under some key: no `profiles/*.wasup`, no
  `exports/*.wasup`, no `replaced-*/profiles/*.wasup` kept by a restore, and nothing at all in
  `backups/`. A fresh key would not open any of them, and creating one would hide that the real
  key is missing; then the sessions fail as before, with the message saying what to do.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from wasupd.errors import KeyUnavailable
from wasupd.profiles.archive import SUFFIX
from wasupd.profiles.keys import from_credentials, generate_key_file

log = structlog.get_logger("wasupd.profiles")

KEEP_A_COPY = (
    "keep a copy of this file in a safe place: sealed profiles cannot be opened without it"
)


def sealed_things(state_dir: Path) -> list[str]:
    """What under `state_dir` needs the key it was sealed with, relative to `state_dir`
    (an unreadable state dir counts as needing one: nothing proves it holds nothing)."""
    try:
        found = [
            *state_dir.glob(f"profiles/*{SUFFIX}"),
            *state_dir.glob(f"exports/*{SUFFIX}"),
            *state_dir.glob(f"replaced-*/profiles/*{SUFFIX}"),
        ]
        backups = state_dir / "backups"  # wasupd.backup.backups_dir
        if backups.is_dir():
            found += backups.iterdir()
    except OSError as exc:
        return [f"{state_dir} (unreadable: {exc.strerror})"]
    return sorted(str(p.relative_to(state_dir)) for p in found)


def refusal(key_file: Path, state_dir: Path, *, system: bool) -> str | None:
    """Why a missing `key_file` must not be created at start; None when it may be."""
    if system:
        return "system mode (root or the service user) creates it only with `wasupd keygen`"
    if from_credentials(key_file):
        return "it is a systemd credential; systemd provides it"
    needing = sealed_things(state_dir)
    if needing:
        more = f" and {len(needing) - 3} more" if len(needing) > 3 else ""
        return (
            f"{', '.join(needing[:3])}{more} in {state_dir} need the key they were sealed with;"
            " put that key file back"
        )
    return None


def missing(key_file: Path) -> bool:
    """True when nothing at all is at `key_file` (a dangling symlink is not missing)."""
    try:
        key_file.lstat()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def create_at_start(key_file: Path, state_dir: Path, *, system: bool) -> str | None:
    """At daemon start: create `key_file` when it is missing and `refusal` finds no reason not
    to, logged at warning level with its path; the new key's id, None when nothing was created
    (a missing key that is not created is logged with the reason). Never raises: a key that
    cannot be written leaves the sessions failing with the usual message."""
    if not missing(key_file):
        return None
    why = refusal(key_file, state_dir, system=system)
    if why is not None:
        log.warning("profile_key_missing", path=str(key_file), not_created=why)
        return None
    try:
        kid = generate_key_file(key_file)
    except KeyUnavailable:  # created by a concurrent `wasupd keygen`: use that one
        return None
    except OSError as exc:
        log.error("profile_key_not_created", path=str(key_file), error=exc.strerror or str(exc))
        return None
    log.warning("profile_key_created", path=str(key_file), key_id=kid, hint=KEEP_A_COPY)
    return kid
