"""End to end: daemon + real Chromium + simulator, driven through wasupctl like a sysadmin would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import zxingcpp
from PIL import Image

from tests.helpers.daemon import DaemonProcess
from tests.helpers.sim import SimProcess
from tests.helpers.waiting import eventually

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
    eventually(lambda: state(d, name) == "connected", 30, f"{name} connected")


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
        eventually(lambda: d.call("daemon.status")["subscribers"] >= 1, 15, "events subscriber")
        sim.call("inject", to=ALICE, **{"from": BOB}, text="a reply ✓")
        inbox = eventually(lambda: d.call("inbox.list", session="alice"), 15, "inbox message")
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
    eventually(lambda: state(d, "alice") == "connected", 60, "restored session connected")
    hist = d.call("session.get", name="alice", history=4)["history"]
    assert [h["to"] for h in hist[-3:]] == ["starting", "syncing", "connected"] or "qr" not in [
        h["to"] for h in hist[-3:]
    ]
    assert len(sim.call("devices", phone=ALICE)) == 1  # same device: no new link
