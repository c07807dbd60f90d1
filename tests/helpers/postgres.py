"""A real PostgreSQL for the tests: Debian's server in a temporary directory, no system service.

Once per test run (`postgres_server`, session scope) `initdb` makes a cluster under /tmp and
`pg_ctl start` runs it on a free 127.0.0.1 port and a Unix socket in the same directory; at
the end `pg_ctl stop -m fast` stops it (no process is left) and the directory goes. PostgreSQL
refuses to run as root, so under root the cluster belongs to the `postgres` user (Debian's
package creates it; `nobody` otherwise). Over TCP it asks for a password (scram-sha-256), as a
real server would; the Unix socket trusts, for the fixture's own administration.

Each test that wants a database gets a fresh one (`PgServer.fresh_db`), dropped afterwards.
`store_target` parametrizes a test over both store backends: `await store.open()` gives the
SQLite file or the PostgreSQL database of that test (the same one each time it is called).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.helpers.daemon import TMP_PREFIX
from wasupd.store.backend.postgres import PostgresDatabase
from wasupd.store.backend.sqlite import SqliteDatabase
from wasupd.store.db import Database, open_database

PG_VERSION = "15"
BIN = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
SUPERUSER = "wasupd_test"
PASSWORD = "pw-" + secrets.token_hex(8)
START_TIMEOUT = 60  # seconds, pg_ctl -t: a cold start on a busy 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _owner() -> pwd.struct_passwd | None:
    """The user the cluster runs as: None for ourselves, else postgres (or nobody) under root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root with neither a postgres nor a nobody user")


@dataclass(frozen=True, slots=True)
class PgServer:
    """A running cluster: where it listens, and how to make a database on it."""

    root: Path
    port: int
    owner: pwd.struct_passwd | None

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str, *, password: str = PASSWORD) -> str:
        """The URL `[store] url` takes for `dbname`: TCP with the superuser's password."""
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """A connection over the trusted Unix socket, autocommit (for CREATE DATABASE)."""
        return psycopg.connect(
            host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname=dbname,
            autocommit=True,
        )  # fmt: skip

    @contextlib.contextmanager
    def fresh_db(self) -> Iterator[str]:
        """A new empty database, dropped (its connections cut) when the block ends; its name."""
        name = f"t_{secrets.token_hex(6)}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            with self.admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def run(self, *argv: str, timeout: float = START_TIMEOUT + 30) -> None:
        """A PostgreSQL program as the cluster's owner, from a directory it can enter."""
        prefix = []
        if self.owner is not None:
            uid, gid = self.owner.pw_uid, self.owner.pw_gid
            prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        subprocess.run(
            [*prefix, *argv], cwd=self.root, check=True, timeout=timeout,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"},
        )  # fmt: skip


def start_server(*, durable: bool = False) -> PgServer:
    """initdb + pg_ctl start in a new directory under /tmp; the caller stops it (`stop_server`).
    `durable`: fsync and synchronous commits on, as in production (benchmarks); the tests'
    cluster goes without, as durability buys them nothing."""
    if not (BIN / "initdb").exists():
        raise RuntimeError(
            f"PostgreSQL {PG_VERSION} is not installed ({BIN}/initdb missing):"
            " run `make system-deps` (as root: apt-get install postgresql-15)"
        )
    owner = _owner()
    root = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}pg-", dir="/tmp"))
    (root / "sock").mkdir()
    (root / "pwfile").write_text(PASSWORD + "\n")
    if owner is not None:
        for path in (root, root / "sock", root / "pwfile"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    server = PgServer(root, _free_port(), owner)
    try:
        server.run(
            str(BIN / "initdb"), "-D", str(server.data), "-U", SUPERUSER, "--pwfile",
            str(root / "pwfile"), "--auth-local=trust", "--auth-host=scram-sha-256",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={server.port}"
            f" -c unix_socket_directories={server.socket_dir}"
            " -c max_connections=200 -c shared_buffers=32MB"
        )
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        server.run(
            str(BIN / "pg_ctl"), "-D", str(server.data), "-l", str(root / "log"), "-w",
            "-t", str(START_TIMEOUT), "-o", options, "start",
        )  # fmt: skip
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


def stop_server(server: PgServer) -> None:
    """pg_ctl stop -m fast (waits until every server process has exited), then the directory."""
    try:
        server.run(str(BIN / "pg_ctl"), "-D", str(server.data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    """The test run's PostgreSQL (started at first use, stopped at the end of the run)."""
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def postgres_db(postgres_server: PgServer) -> Iterator[str]:
    """The `[store] url` of a fresh database for this test."""
    with postgres_server.fresh_db() as name:
        yield postgres_server.url(name)


@dataclass(frozen=True, slots=True)
class StoreTarget:
    """Where one test's store lives: `kind` "sqlite" (the file `path`) or "postgres" (`url`)."""

    kind: str
    path: Path
    url: str = ""

    async def open(self, migrations: Sequence[str] | None = None) -> Database:
        """Open (and migrate) this test's store as the daemon does; with `migrations`, only
        those steps (a store an older wasupd left)."""
        if migrations is None:
            return await open_database(self.path, self.url)
        if self.kind == "sqlite":
            return await SqliteDatabase.open(self.path, migrations)
        return await PostgresDatabase.open(self.url, migrations)


@pytest.fixture(params=["sqlite", "postgres"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    """This test once with each backend."""
    path = tmp_path / "wasupd.db"
    if request.param == "sqlite":
        return StoreTarget("sqlite", path)
    return StoreTarget("postgres", path, request.getfixturevalue("postgres_db"))
