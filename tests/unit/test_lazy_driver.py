"""Nothing a single host (SQLite) runs loads the PostgreSQL driver: the daemon's modules,
`wasupd check` and the CLI (tests/e2e/test_daemon_footprint.py reads a running daemon's maps).
psycopg and its pool cost about 10 MiB of RSS and 0.1 s of start-up, for nothing without
`[store] url`."""

from __future__ import annotations

import subprocess
import sys

# What a SQLite daemon imports: the daemon, its App and services, `wasupd check`, the CLI.
_PROGRAM = """
import sys
import wasupd.app, wasupd.daemon, wasupd.services, wasupd.preflight, wasupd.rpc.methods
import wasupctl.app
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in ("psycopg", "psycopg_pool"))))
"""


def test_a_sqlite_daemon_imports_no_postgresql_driver() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "", f"loaded without a PostgreSQL store: {out.stdout.strip()}"
