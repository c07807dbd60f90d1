"""End to end: daemon + real Chromium + simulator, driven through wasupctl like a sysadmin would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image

from tests.helpers.daemon import DaemonProcess
from tests.helpers.sim import SimProcess, wait_until

ALICE, BOB = "15550001111", "15550002222"
CTL = [sys.executable, "-m", "wasupctl.app"]


def ctl(
    d: DaemonProcess, *args: str, stdin: bytes | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[bytes]:
    """Run wasupctl against the daemon."""
    return subprocess.run(
        [*CTL, "--socket", str(d.socket), *args], input=stdin, capture_output=True, timeout=timeout
    )


def state(d: DaemonProcess, name: str) -> str:
    """The session's current state."""
    return str(d.call("session.get", name=name, history=0)["state"])


def start(daemon_factory: Any, sim: SimProcess, **sections: dict[str, Any]) -> DaemonProcess:
    """A daemon whose browsers open the simulator."""
    browser = {"url": sim.url, **sections.pop("browser", {})}
    return daemon_factory(browser=browser, **sections)


def link_by_qr(d: DaemonProcess, sim: SimProcess, name: str, phone: str, tmp: Path) -> None:
    """Create the session, decode the PNG from `wasupctl qr`, scan it with the simulated phone."""
    out = ctl(d, "session", "create", name, "--no-wait")
    assert out.returncode == 0, out.stderr
    png = tmp / f"{name}.png"
    out = ctl(d, "qr", name, "--format", "png", "-o", str(png), "--wait", "30")
    assert out.returncode == 0, out.stderr
    decoded = zxingcpp.read_barcodes(Image.open(png))
    assert decoded, "the PNG QR did not decode"
    payload = decoded[0].text
    assert payload == d.call("session.qr", name=name)["payload"]
    assert payload.count(",") == 4 and payload.startswith("2@")
    sim.call("scan", payload=payload, phone=phone)
    wait_until(lambda: state(d, name) == "connected", 30, f"{name} connected")


def test_link_send_receive_restart_without_qr(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """Link by QR; send by argument, stdin and --lines; receive; restart: connected with no new QR."""
    sim = sim_factory(accounts=[ALICE, BOB])
    d = start(daemon_factory, sim)
    link_by_qr(d, sim, "alice", ALICE, tmp_path)

    assert (
        ctl(
            d, "send", "+1 555-000-2222", "plain argument", "--from", "alice", "--wait", "sent"
        ).returncode
        == 0
    )
    text = "stdin: ünïcödé 🎉\nsecond line kept"
    out = ctl(d, "send", BOB, "--from", "alice", "--wait", "delivered", stdin=text.encode())
    assert out.returncode == 0, out.stderr
    out = ctl(
        d,
        "send",
        BOB,
        "--lines",
        "--from",
        "alice",
        "--wait",
        "sent",
        stdin="one\ntwo 👍\n".encode(),
    )
    assert out.returncode == 0 and len(out.stdout.split()) == 2
    bodies = [m["body"] for m in sim.call("received", phone=BOB)]
    assert bodies == ["plain argument", text, "one", "two 👍"]

    events = subprocess.Popen(
        [*CTL, "--socket", str(d.socket), "--json", "events", "--follow", "--type", "message"],
        stdout=subprocess.PIPE,
    )
    try:
        wait_until(lambda: d.call("daemon.status")["subscribers"] >= 1, 15, "events subscriber")
        sim.call("inject", to=ALICE, **{"from": BOB}, text="a reply ✓")
        inbox = wait_until(lambda: d.call("inbox.list", session="alice"), 15, "inbox message")
        assert inbox[-1]["body"] == "a reply ✓" and inbox[-1]["sender"] == f"{BOB}@c.us"
        line = events.stdout.readline()  # type: ignore[union-attr]
        assert json.loads(line)["body"] == "a reply ✓"
    finally:
        events.terminate()
        events.wait(10)
        events.stdout.close()  # type: ignore[union-attr]

    device = sim.call("devices", phone=ALICE)[0]
    assert d.stop() == 0
    # No plaintext profile bytes remain: the device credential is only inside the sealed archive.
    for root in (d.state_dir, d.runtime_dir):
        for f in root.rglob("*"):
            if f.is_file() and f.suffix != ".log":
                assert device.encode() not in f.read_bytes(), f"plaintext credential in {f}"
    assert not list((d.runtime_dir / "profiles").iterdir())

    d.start()
    wait_until(lambda: state(d, "alice") == "connected", 30, "restored session connected")
    hist = d.call("session.get", name="alice", history=4)["history"]
    assert [h["to"] for h in hist[-3:]] == ["starting", "syncing", "connected"] or "qr" not in [
        h["to"] for h in hist[-3:]
    ]
    assert len(sim.call("devices", phone=ALICE)) == 1  # same device: no new link


def test_pairing_code_links(daemon_factory: Any, sim_factory: Any) -> None:
    """`wasupctl pair` prints an 8-character code (4+4); typing it on the phone links the session."""
    sim = sim_factory(accounts=[ALICE])
    d = start(daemon_factory, sim)
    assert ctl(d, "session", "create", "pairme", "--no-wait").returncode == 0
    wait_until(lambda: state(d, "pairme") == "qr", 30, "qr state")
    out = ctl(d, "--json", "pair", "pairme", "--phone", "+1 555 000 1111", "--no-wait")
    assert out.returncode == 0, out.stderr
    code = json.loads(out.stdout)["code"]
    assert len(code) == 8 and set(code) <= set("123456789ABCDEFGHJKLMNPQRSTVWXYZ")
    sim.call("enter_code", code=code, phone=ALICE)
    wait_until(lambda: state(d, "pairme") == "connected", 30, "linked by code")


def test_remote_logout_wipes_profile(daemon_factory: Any, sim_factory: Any, tmp_path: Path) -> None:
    """The phone unlinking the device ends in logged_out, with the archive and live dir gone."""
    sim = sim_factory(accounts=[ALICE])
    d = start(daemon_factory, sim)
    link_by_qr(d, sim, "bye", ALICE, tmp_path)
    wait_until(
        lambda: (d.state_dir / "profiles" / "bye.wasup").exists(), 15, "checkpoint after linking"
    )
    sim.call("logout", phone=ALICE)
    wait_until(lambda: state(d, "bye") == "logged_out", 30, "logged_out")
    assert not (d.state_dir / "profiles" / "bye.wasup").exists()
    assert not (d.runtime_dir / "profiles" / "bye").exists()
    out = ctl(d, "health", "bye")
    assert out.returncode == 2 and out.stdout.startswith(b"CRITICAL")


def test_qr_never_scanned_fails(daemon_factory: Any, sim_factory: Any) -> None:
    """With nobody scanning, the QR rotates, is reloaded max_rotations times, then the session fails."""
    sim = sim_factory(time_factor=0.01, accounts=[ALICE])
    d = start(daemon_factory, sim, qr={"max_rotations": 1})
    assert ctl(d, "session", "create", "lonely", "--no-wait").returncode == 0
    wait_until(lambda: state(d, "lonely") == "failed", 60, "failed after QR rotations")
    info = d.call("session.get", name="lonely", history=50)
    assert "QR not scanned" in info["reason"]
    events = [h["to"] for h in info["history"]]
    assert events[-2:] == ["stopping", "failed"]
    out = ctl(d, "session", "create", "lonely2", "--wait-timeout", "60")
    assert out.returncode == 1 and b"QR not scanned" in out.stderr


@pytest.mark.parametrize(("fault", "expect"), [("tos_block", "failed"), ("conflict", "degraded")])
def test_whatsapp_refusal_states(
    daemon_factory: Any, sim_factory: Any, fault: str, expect: str
) -> None:
    """TOS_BLOCK fails the session with the reason; CONFLICT is reported as degraded."""
    sim = sim_factory(accounts=[ALICE])
    d = start(daemon_factory, sim)
    sim.call("fault", kind=fault)
    assert ctl(d, "session", "create", "blocked", "--no-wait").returncode == 0
    wait_until(lambda: state(d, "blocked") == expect, 30, expect)
    assert fault.upper() in d.call("session.get", name="blocked", history=0)["reason"]


def test_silent_stall_detected_and_recovered(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """A connected page whose server goes silent is probed, degraded, restarted; messages flow again."""
    sim = sim_factory(accounts=[ALICE, BOB])
    d = start(
        daemon_factory,
        sim,
        health={"silence_timeout": 1.0, "probe_interval": 0.5, "probe_timeout": 1.5},
        limits={"check_interval": 0.5},
        restart={"backoff_initial": 0.5},
    )
    link_by_qr(d, sim, "quiet", ALICE, tmp_path)
    sim.call("fault", kind="stall", phone=ALICE)
    wait_until(lambda: state(d, "quiet") == "degraded", 30, "degraded")
    sim.call("clear_fault", kind="stall")
    wait_until(lambda: state(d, "quiet") == "connected", 60, "recovered")
    reasons = " ".join(
        h["reason"] for h in d.call("session.get", name="quiet", history=30)["history"]
    )
    assert "liveness probe failed" in reasons
    assert (
        ctl(d, "send", BOB, "after the stall", "--from", "quiet", "--wait", "sent").returncode == 0
    )
    assert [m["body"] for m in sim.call("received", phone=BOB)] == ["after the stall"]
