"""A PostgreSQL host whose database goes away: the daemon still stops in bounded time, with
no browser left behind. A frozen server (every process SIGSTOPped: what a partition or a hung
host looks like) is the worst case: its connections neither answer nor fail."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from tests.helpers.postgres import PgServer, start_server, stop_server
from tests.helpers.waiting import eventually

# What the daemon may take to stop with its database frozen: the store's bound on one
# statement while stopping (wasupd.store.backend.postgres) and the browser's stop, with room
# for a busy machine. Without a bound it waited for the pool's timeout once per write.
STOP_BOUND = 40.0


def cluster(server: PgServer) -> list[psutil.Process]:
    """The postmaster and every process it forked."""
    pid = int((server.data / "postmaster.pid").read_text().split()[0])
    main = psutil.Process(pid)
    return [main, *main.children(recursive=True)]


@contextlib.contextmanager
def frozen(server: PgServer) -> Iterator[None]:
    """The server stopped in its tracks for the block (SIGSTOP), then let go (SIGCONT)."""
    procs = cluster(server)
    for p in procs:
        p.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGCONT)


@pytest.mark.chromium
def test_a_daemon_whose_database_froze_stops_in_bounded_time(
    daemon_factory: Any, sim_factory: Any
) -> None:
    sim = sim_factory()
    server = start_server()
    try:
        with server.fresh_db() as db:
            d = daemon_factory(browser={"url": sim.url}, store={"url": server.url(db)})
            d.call("session.create", name="s", start=True)
            eventually(
                lambda: d.call("session.get", name="s", history=0)["state"],
                60,
                "a browser at the QR",
                ok=lambda st: st == "qr",
            )
            assert d.proc is not None
            browsers = psutil.Process(d.proc.pid).children(recursive=True)
            assert browsers, "the session runs a browser"
            with frozen(server):
                t0 = time.monotonic()
                code = d.stop(timeout=STOP_BOUND + 30)
                took = time.monotonic() - t0
            assert took < STOP_BOUND, f"the daemon took {took:.0f} s to stop"
            assert code == 0
            assert not [p for p in browsers if p.is_running() and p.status() != "zombie"]
    finally:
        stop_server(server)
