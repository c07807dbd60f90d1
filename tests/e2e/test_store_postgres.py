"""The daemon on PostgreSQL (`[store] url`): a real daemon, Chromium and the simulator."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.test_whatsapp import ctl, link_by_qr, state
from tests.helpers.daemon import DaemonProcess
from tests.helpers.postgres import PASSWORD, PgServer
from tests.helpers.waiting import eventually
from wasupd.store.db import open_database

ALICE, BOB = "15550001111", "15550002222"


def sent(d: DaemonProcess, n: int) -> list[dict[str, Any]]:
    """The outbox once `n` of its messages went out (sent, delivered or read)."""
    return eventually(  # type: ignore[no-any-return]
        lambda: d.call("outbox.list", session="alice", limit=100),
        60,
        f"{n} messages sent",
        ok=lambda rows: sum(m["state"] in ("sent", "delivered", "read") for m in rows) == n,
    )


@pytest.mark.chromium
def test_the_daemon_keeps_its_records_in_postgresql(
    daemon_factory: Any, sim_factory: Any, postgres_db: str, tmp_path: Path
) -> None:
    """With `[store] url` the daemon makes no SQLite file: a session is created and linked, its
    messages are delivered once each, and after a restart the session, its history and the
    outbox come back from PostgreSQL and it sends again."""
    sim = sim_factory(accounts=[ALICE, BOB])
    d = daemon_factory(browser={"url": sim.url}, store={"url": postgres_db})
    link_by_qr(d, sim, "alice", ALICE, tmp_path)
    eventually(
        lambda: (d.state_dir / "profiles" / "alice.wasup").exists(), 15, "checkpoint after linking"
    )
    first = [
        d.call("message.send", to=BOB, text=f"pg {i}", session="alice", idempotency_key=f"k{i}")
        for i in range(5)
    ]
    sent(d, 5)
    assert not (d.state_dir / "wasupd.db").exists()

    assert d.stop() == 0
    d.start()
    eventually(lambda: state(d, "alice") == "connected", 60, "alice connected after the restart")
    history = d.call("session.get", name="alice", history=50)["history"]
    assert any(h["to"] == "connected" for h in history[:-1]), history  # from before the restart
    again = d.call("message.send", to=BOB, text="pg 0", session="alice", idempotency_key="k0")
    assert again["id"] == first[0]["id"]  # the key was remembered across the restart
    d.call("message.send", to=BOB, text="pg after", session="alice")
    rows = sent(d, 6)
    assert {m["id"] for m in first} <= {m["id"] for m in rows}
    counts = Counter(m["body"] for m in sim.call("received", phone=BOB))
    assert counts == Counter({**{f"pg {i}": 1 for i in range(5)}, "pg after": 1})
    assert not (d.state_dir / "wasupd.db").exists()


def test_on_postgresql_daemon_backup_refuses_and_says_what_backs_up_each_part(
    daemon_factory: Any, postgres_db: str
) -> None:
    """`wasupctl backup` on a PostgreSQL store: exit 1 naming pg_dump and the profiles
    directory (no half backup is written), the password never shown; the daemon stays up."""
    d = daemon_factory(store={"url": postgres_db})
    out = ctl(d, "backup")
    assert out.returncode == 1, out
    err = out.stderr.decode()
    assert "pg_dump" in err and str(d.state_dir / "profiles") in err, err
    assert PASSWORD not in err
    assert not (d.state_dir / "backups").exists() or not any((d.state_dir / "backups").iterdir())
    assert d.call("daemon.status")["version"]


def test_an_unreachable_server_stops_the_start_with_what_to_check(
    daemon_factory: Any, postgres_server: PgServer
) -> None:
    """A wrong password in `[store] url`: the daemon exits 1 at start with one error line that
    names the server and says to check the password; no traceback, no password."""
    d = daemon_factory(
        start=False, store={"url": postgres_server.url("postgres", password="bad-pw")}
    )
    d.write_config()
    out = subprocess.run(
        [*d.command, "--config", str(d.config_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1, out
    text = out.stdout + out.stderr
    assert "check the user name and password in [store] url" in text, text
    assert "Traceback" not in text and "bad-pw" not in text


def test_restore_refuses_a_postgresql_store(daemon_factory: Any, postgres_db: str) -> None:
    """`wasupd restore` with `[store] url` set: exit 1 pointing at pg_restore, nothing written."""
    d = daemon_factory(start=False, store={"url": postgres_db})
    d.write_config()
    out = subprocess.run(
        [*d.command, "--config", str(d.config_path), "restore", str(d.root / "no-backup")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "pg_restore" in out.stderr, out
    assert PASSWORD not in out.stderr and not (d.state_dir / "wasupd.db").exists()


async def _select_after_another_host_migrates(url: str, tmp_path: Path) -> list[Any]:
    db = await open_database(tmp_path / "unused.db", url)
    try:
        for _ in range(10):  # often enough for a driver to prepare it on the server
            await db.fetchall("SELECT * FROM sessions")
        with psycopg.connect(url, autocommit=True) as other:  # a newer host's migration
            other.execute("ALTER TABLE sessions ADD COLUMN from_a_newer_host TEXT")
        return await db.fetchall("SELECT * FROM sessions")
    finally:
        await db.close()


def test_a_column_added_by_another_host_breaks_no_query(postgres_db: str, tmp_path: Path) -> None:
    """A rolling upgrade: one host of the fleet migrates (adds a column) while the others run
    on; their queries go on working (no cached server-side plan of the old row type)."""
    assert asyncio.run(_select_after_another_host_migrates(postgres_db, tmp_path)) == []
