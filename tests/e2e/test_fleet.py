"""A fleet on this machine: daemons with their own runtime and state dirs on one PostgreSQL,
one key and one shared profiles directory, real Chromium against the simulator. The
simulator judges "never two pages for one account" (its `conflicts` stay empty) and
"exactly once" (what reached the phone). `postgres_db` comes first among the fixtures, so
the database outlives the daemons."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import zxingcpp
from PIL import Image

from tests.e2e.test_whatsapp import ALICE, BOB, ctl
from tests.helpers.daemon import DaemonProcess
from tests.helpers.sim import SimProcess
from tests.helpers.waiting import eventually
from tests.helpers.webhooks import SECRET, Receiver

TTL = 6.0  # fleet.lease_timeout: short, so takeovers are quick to see
START = 60.0  # a browser start and a restore from the sealed profile, on a busy machine


def host(
    daemon_factory: Any,
    sim: SimProcess,
    url: str,
    shared: Path,
    name: str,
    webhooks: dict[str, Any] | None = None,
) -> DaemonProcess:
    """One host of the fleet, named `name`."""
    d: DaemonProcess = daemon_factory(
        browser={"url": sim.url},
        daemon={"host_id": name},
        store={"url": url},
        fleet={"lease_timeout": TTL, "profiles_dir": str(shared / "profiles")},
        profiles={"key_file": str(shared / "profile.key")},
        webhooks=webhooks or {},
    )
    return d


def shared_dir(tmp_path: Path) -> Path:
    """What every host shares: the key file and the sealed profiles."""
    shared = tmp_path / "shared"
    (shared / "profiles").mkdir(parents=True, mode=0o700)
    os.chmod(shared, 0o700)
    return shared


def where(d: DaemonProcess, name: str) -> tuple[str, str]:
    """(host, state) of session `name` as daemon `d` sees the fleet."""
    s = d.call("session.get", name=name, history=0)
    return str(s.get("host") or ""), str(s["state"])


def link(d: DaemonProcess, sim: SimProcess, name: str, phone: str, tmp: Path) -> None:
    """Create the session on `d` (the only host yet: it claims it), scan its QR there."""
    out = ctl(d, "session", "create", name, "--no-wait")
    assert out.returncode == 0, out.stderr
    eventually(lambda: where(d, name)[1], 30, f"{name} showing a QR", ok=lambda s: s == "qr")
    png = tmp / f"{name}.png"
    out = ctl(d, "qr", name, "--format", "png", "-o", str(png), "--wait", "30")
    assert out.returncode == 0, out.stderr
    sim.call("scan", payload=zxingcpp.read_barcodes(Image.open(png))[0].text, phone=phone)


def sealed(shared: Path, name: str) -> bool:
    return (shared / "profiles" / f"{name}.wasup").exists()


def test_kill9_moves_sessions_with_no_qr_no_double_run_and_exactly_once(
    postgres_db: str, daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """A host killed with SIGKILL: after the lease timeout another host runs its session
    from the sealed profile (no QR, still one device), the simulator never saw two pages of
    the account, and a message sent through the surviving host meanwhile arrives once."""
    sim = sim_factory(accounts=[ALICE, BOB])
    shared = shared_dir(tmp_path)
    a = host(daemon_factory, sim, postgres_db, shared, "a")
    link(a, sim, "alice", ALICE, tmp_path)
    eventually(lambda: where(a, "alice"), 30, "alice on a", ok=lambda w: w == ("a", "connected"))
    eventually(lambda: sealed(shared, "alice"), 60, "alice's first checkpoint sealed")
    b = host(daemon_factory, sim, postgres_db, shared, "b")
    hosts = eventually(lambda: b.call("host.list"), 20, "both hosts", ok=lambda h: len(h) == 2)
    assert {h["host"] for h in hosts} == {"a", "b"}

    a.kill9()
    sent = b.call("message.send", to=BOB, text="during the takeover", session="alice")
    eventually(
        lambda: where(b, "alice"), TTL + START, "alice on b", ok=lambda w: w == ("b", "connected")
    )
    got = sim.call("wait_received", phone=BOB, count=1, timeout=60)
    assert [m["body"] for m in got] == ["during the takeover"]
    eventually(  # the page's answer reaches the outbox just after the phone got it
        lambda: b.call("message.get", id=sent["id"])["state"],
        30,
        "the message marked sent",
        ok=lambda st: st in ("sent", "delivered", "read"),
    )
    assert len(sim.call("devices", phone=ALICE)) == 1  # the same device: no QR, no new link
    assert sim.call("conflicts", phone=ALICE) == []
    listed = {h["host"]: h for h in b.call("host.list")}
    assert listed["b"]["sessions"] == 1 and listed["a"]["lease"] in ("late", "expired")
    assert [m["body"] for m in sim.call("received", phone=BOB)] == ["during the takeover"]


def alice_on_a(
    postgres_db: str,
    daemon_factory: Any,
    sim: SimProcess,
    tmp_path: Path,
    webhooks: dict[str, Any] | None = None,
) -> tuple[DaemonProcess, DaemonProcess, Path]:
    """Hosts a and b, with alice linked on a and her first checkpoint sealed."""
    shared = shared_dir(tmp_path)
    a = host(daemon_factory, sim, postgres_db, shared, "a", webhooks)
    link(a, sim, "alice", ALICE, tmp_path)
    eventually(lambda: where(a, "alice"), 30, "alice on a", ok=lambda w: w == ("a", "connected"))
    eventually(lambda: sealed(shared, "alice"), 60, "alice's first checkpoint sealed")
    b = host(daemon_factory, sim, postgres_db, shared, "b", webhooks)
    eventually(lambda: b.call("host.list"), 20, "both hosts", ok=lambda h: len(h) == 2)
    return a, b, shared


def test_a_frozen_host_is_replaced_and_on_resume_stops_and_sends_nothing(
    postgres_db: str, daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """SIGSTOP past the lease: b takes alice over; the frozen host's page (its browser kept
    running) is the one WhatsApp moves to CONFLICT, never b's; on SIGCONT a stops that
    browser, and the message queued meanwhile goes out once, from b. a's stop of a session
    b runs is no state change to the outside: no webhook says alice stopped."""
    sim = sim_factory(accounts=[ALICE, BOB])
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    rx = Receiver([])
    hooks = {"url": rx.url, "secret_file": str(secret), "backoff_initial": 0.2}
    a, b, _ = alice_on_a(postgres_db, daemon_factory, sim, tmp_path, hooks)
    (old_page,) = [p["page"] for p in sim.call("state")["pages"] if p["phone"] == ALICE]
    assert a.proc is not None
    a.proc.send_signal(signal.SIGSTOP)
    try:
        eventually(lambda: where(b, "alice"), TTL + START, "alice on b", ok=lambda w: w[0] == "b")
        sent = b.call("message.send", to=BOB, text="while a is frozen", session="alice")
        eventually(
            lambda: where(b, "alice"),
            START,
            "alice connected on b",
            ok=lambda w: w[1] == "connected",
        )
    finally:
        a.proc.send_signal(signal.SIGCONT)
    eventually(a.log, 30, "a stopping the session it lost", ok=lambda log: '"lease_lost"' in log)
    eventually(
        lambda: [p for p in sim.call("state")["pages"] if p["page"] == old_page],
        30,
        "a's browser gone",
        ok=lambda pages: pages == [],
    )
    got = sim.call("wait_received", phone=BOB, count=1, timeout=60)
    assert [m["body"] for m in got] == ["while a is frozen"]
    eventually(
        lambda: b.call("message.get", id=sent["id"])["state"],
        30,
        "the message marked sent",
        ok=lambda st: st in ("sent", "delivered", "read"),
    )
    conflicts = sim.call("conflicts", phone=ALICE)
    assert conflicts and {c["page"] for c in conflicts} == {old_page}  # only the stale page
    assert where(b, "alice") == ("b", "connected")
    assert [m["body"] for m in sim.call("received", phone=BOB)] == ["while a is frozen"]
    eventually(  # whatever a queued when it stopped has been delivered by now
        lambda: b.call("webhooks.list", state="pending"),
        30,
        "webhooks delivered",
        ok=lambda p: p == [],
    )
    states = [
        body["data"]
        for reqs in rx.by_id().values()
        for body in reqs
        if body.get("event") == "state" and body["data"]["session"] == "alice"
    ]
    assert [s["to"] for s in states].count("connected") == 2, states  # on a, then on b
    assert not [s for s in states if s["to"] in ("stopping", "stopped")], states
    rx.stop()


def test_move_and_drain_lose_and_double_nothing(
    postgres_db: str, daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """Messages sent through both hosts while alice moves to b (`session move`) and back
    (`host drain b`) each arrive exactly once; the moves never run two pages."""
    sim = sim_factory(accounts=[ALICE, BOB])
    a, b, _ = alice_on_a(postgres_db, daemon_factory, sim, tmp_path)
    # `--from auto` on a host with no session of its own: alice, connected on a, sends it.
    eventually(
        lambda: where(b, "alice"), 20, "b sees alice on a", ok=lambda w: w == ("a", "connected")
    )
    auto = b.call("message.send", to=BOB, text="auto through b")
    assert auto["session"] == "alice" and not auto.get("wait_reason"), auto
    bodies: list[str] = ["auto through b"]

    def send_some(tag: str) -> None:
        for i, d in enumerate((a, b, a, b)):
            bodies.append(f"{tag} {i}")
            d.call("message.send", to=BOB, text=bodies[-1], session="alice")

    send_some("before")
    out = ctl(a, "session", "move", "alice", "--to", "b")
    assert out.returncode == 0, out.stderr
    send_some("moving")
    eventually(lambda: where(a, "alice"), START, "alice on b", ok=lambda w: w == ("b", "connected"))
    out = ctl(b, "host", "drain", "b")
    assert out.returncode == 0, out.stderr
    send_some("draining")
    eventually(
        lambda: where(b, "alice"), START, "alice back on a", ok=lambda w: w == ("a", "connected")
    )
    got = sim.call("wait_received", phone=BOB, count=len(bodies), timeout=120)
    assert sorted(m["body"] for m in got) == sorted(bodies)
    assert sim.call("conflicts", phone=ALICE) == []
    assert len(sim.call("devices", phone=ALICE)) == 1
    listed = {h["host"]: h for h in a.call("host.list")}
    assert listed["b"]["draining"] and listed["b"]["sessions"] == 0
    bad = ctl(a, "session", "move", "alice", "--to", "b")
    assert bad.returncode != 0 and b"draining" in bad.stderr


def test_three_hosts_share_new_sessions_by_headroom(
    postgres_db: str, daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """Three hosts on this machine (so about the same headroom): three new sessions, created
    through one host, go one to each (each claim lowers that host's room by a session), and
    every host shows the same HOST column; metrics name the host."""
    sim = sim_factory(accounts=[ALICE, BOB])
    shared = shared_dir(tmp_path)
    hosts = [host(daemon_factory, sim, postgres_db, shared, n) for n in ("a", "b", "c")]
    eventually(lambda: hosts[0].call("host.list"), 20, "three hosts", ok=lambda h: len(h) == 3)
    for name in ("s1", "s2", "s3"):
        hosts[0].call("session.create", name=name, start=True)

    def placed() -> dict[str, str]:
        return {s["name"]: s.get("host") or "" for s in hosts[1].call("session.list")}

    got = eventually(
        placed, 60, "three sessions placed", ok=lambda p: len(p) == 3 and all(p.values())
    )
    assert sorted(got.values()) == ["a", "b", "c"]
    for d in hosts:
        eventually(
            lambda d=d: {s["name"]: s["host"] for s in d.call("session.list")},
            20,
            "the same view on every host",
            ok=lambda v: v == got,
        )
    out = ctl(hosts[2], "status", "--wide")
    assert out.returncode == 0 and b"HOST" in out.stdout
    listed = {h["host"]: h["sessions"] for h in hosts[0].call("host.list")}
    assert listed == {"a": 1, "b": 1, "c": 1}
    # The QR of a session on c, asked of a (as `wasupctl qr` would): scanning it links it on c.
    on_c = next(name for name, h in got.items() if h == "c")
    qr = hosts[0].call("session.qr", name=on_c, wait=30)
    assert qr["state"] == "qr" and qr["payload"], qr
    sim.call("scan", payload=qr["payload"], phone=ALICE)
    eventually(
        lambda: where(hosts[0], on_c),
        60,
        f"{on_c} linked on c",
        ok=lambda w: w == ("c", "connected"),
    )
    text = hosts[2].call("metrics.get")["text"]
    assert 'wasupd_fleet_host{host="c"} 1.0' in text
    # c reports the one session it runs, each series naming the host; the others, not at all.
    on_c_now = next(name for name, h in got.items() if h == "c")
    series = [line for line in text.splitlines() if line.startswith("wasupd_session_state{")]
    assert series and all(f'session="{on_c_now}"' in line for line in series), series
    assert all('host="c"' in line for line in text.splitlines() if line.startswith("wasupd_"))


def test_restart_and_delete_asked_of_another_host_are_carried_out_by_its_host(
    postgres_db: str, daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """`wasupctl session restart`, `stop`, `start` and `rm --force` on b, for alice running on
    a: a restarts her (still on a, the same device); the stop returns once she stopped; after
    the start a host runs her again; the delete goes through her host; both hosts forget her."""
    sim = sim_factory(accounts=[ALICE, BOB])
    a, b, _ = alice_on_a(postgres_db, daemon_factory, sim, tmp_path)
    eventually(
        lambda: where(b, "alice"), 20, "b sees alice on a", ok=lambda w: w == ("a", "connected")
    )
    out = ctl(b, "session", "restart", "alice")
    assert out.returncode == 0, out.stderr
    history = a.call("session.get", name="alice", history=20)["history"]
    assert any(h["reason"] == "restart requested" for h in history), history
    eventually(
        lambda: where(b, "alice"), START, "alice back on a", ok=lambda w: w == ("a", "connected")
    )
    assert len(sim.call("devices", phone=ALICE)) == 1 and sim.call("conflicts", phone=ALICE) == []

    out = ctl(b, "session", "stop", "alice")  # returns once a stopped her
    assert out.returncode == 0, out.stderr
    assert where(a, "alice") == ("", "stopped")
    out = ctl(b, "session", "start", "alice")
    assert out.returncode == 0, out.stderr
    owner, _ = eventually(
        lambda: where(b, "alice"), START, "alice running again", ok=lambda w: w[1] == "connected"
    )
    other = b if owner == "a" else a  # the host placement did not give her to

    out = ctl(other, "session", "rm", "alice", "--force")
    assert out.returncode == 0, out.stderr
    for d in (a, b):  # the asker at once; the other at its next lease round
        eventually(
            lambda d=d: [s["name"] for s in d.call("session.list")],
            10,
            "alice forgotten",
            ok=lambda names: "alice" not in names,
        )
    eventually(
        lambda: [p for p in sim.call("state")["pages"] if p["phone"] == ALICE],
        30,
        "alice's page gone",
        ok=lambda pages: pages == [],
    )
