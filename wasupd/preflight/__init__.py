"""`wasupd check`: what would stop the daemon, or one of its sessions, on this host.

Each check looks at one thing the daemon depends on and says what to do when it is wrong: that
the daemon's user can run this interpreter and read this wasupd, the Chromium builds the config
and the stored sessions ask for, the sandbox, the profile key, the directories, the socket
group, the database version, the open-file limit and inotify instances. It reads, never writes: it can run beside
a live daemon, before `systemctl start`, or from a monitoring job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from wasupd.config import Config
from wasupd.preflight.findings import Finding, Level
from wasupd.preflight.host import (
    check_browsers,
    check_database,
    check_directories,
    check_fleet,
    check_key,
    check_sandbox,
    check_socket_group,
)
from wasupd.preflight.install import check_install
from wasupd.preflight.limits import check_inotify, check_open_files

__all__ = ["CHECKS", "Finding", "Level", "exit_code", "render", "run_checks"]


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


CHECKS: tuple[Callable[[Config], Iterator[Finding]], ...] = (
    check_install,
    check_browsers,
    check_sandbox,
    check_key,
    check_directories,
    check_socket_group,
    check_database,
    check_fleet,
    check_open_files,
    check_inotify,
)
