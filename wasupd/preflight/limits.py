"""The host limits `limits.max_sessions` browsers run into: open files and inotify instances.

Both sizes were measured with 100 linked sessions of each build (docs/benchmarks.md, capacity).
RLIMIT_NOFILE is per process, so what counts is the busiest single process, not the sum over
the trees: the daemon holds 4 fds per session (the DevTools pipe's two ends, a pidfd, the
profile lock) plus a few dozen of its own, and one Chromium process at most about 150 (the
full build's browser process), whatever the number of sessions. Inotify instances are per user
(`fs.inotify.max_user_instances`, 128 by default), and every Chromium tree takes 2 (its browser
and its network service each watch files); at 64 trees a default host has none left, and
Chromium carries on without watching, as do the user's other programs that needed one.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

from wasupd.config import Config
from wasupd.preflight.findings import Finding

# The daemon's fds: its own (store, socket, logs, RPC clients) and those of each session, with
# headroom over the measured 4 for checkpoints and RPC connections in flight.
DAEMON_BASE_FDS = 256
DAEMON_FDS_PER_SESSION = 8
# The most one Chromium process opens (measured about 150), with headroom.
BROWSER_PROCESS_FDS = 1024
INOTIFY_PER_SESSION = 2
INOTIFY_HEADROOM = 16  # the user's other programs (a desktop session, a test run)
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")


def fds_needed(max_sessions: int) -> int:
    """The RLIMIT_NOFILE the busiest process needs with `max_sessions` browsers."""
    return max(DAEMON_BASE_FDS + max_sessions * DAEMON_FDS_PER_SESSION, BROWSER_PROCESS_FDS)


def inotify_needed(max_sessions: int) -> int:
    """The fs.inotify.max_user_instances `max_sessions` browsers need."""
    return max_sessions * INOTIFY_PER_SESSION + INOTIFY_HEADROOM


def check_open_files(config: Config, hard: int | None = None) -> Iterator[Finding]:
    """The open-file limit fits the daemon with `limits.max_sessions` browsers and each of their
    processes (they inherit it). The hard limit (`hard`, else this process's) is what counts:
    the daemon raises its soft limit to it at start."""
    if hard is None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    need = fds_needed(config.limits.max_sessions)
    if hard != resource.RLIM_INFINITY and hard < need:
        yield Finding(
            "warn",
            "open files",
            f"hard limit {hard} is below {need} for {config.limits.max_sessions} sessions"
            " (limits.max_sessions); raise it (LimitNOFILE= in the unit, ulimit -Hn in a shell)",
        )
    else:
        limit = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
        yield Finding("ok", "open files", f"hard limit {limit} (need about {need})")


def check_inotify(config: Config, limit_file: Path = INOTIFY_INSTANCES) -> Iterator[Finding]:
    """fs.inotify.max_user_instances fits `limits.max_sessions` browsers of one user."""
    try:
        have = int(limit_file.read_text())
    except (OSError, ValueError):
        yield Finding("warn", "inotify", f"cannot read {limit_file}; is /proc mounted?")
        return
    need = inotify_needed(config.limits.max_sessions)
    if have < need:
        yield Finding(
            "warn",
            "inotify",
            f"fs.inotify.max_user_instances is {have}, below {need} for"
            f" {config.limits.max_sessions} sessions (limits.max_sessions, 2 per browser);"
            f" raise it: sysctl -w fs.inotify.max_user_instances={need}, and keep it in"
            " /etc/sysctl.d/60-wasupd.conf",
        )
    else:
        yield Finding("ok", "inotify", f"max_user_instances {have} (need about {need})")
