"""End to end, messages: `wasupctl send / inbox / events` against daemon + Chromium + simulator."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.test_linking import (
    ALICE,
    BOB,
    CTL,
    Lines,
    Watch,
    ctl,
    link_by_qr,
    popen,
    reap,
    start,
)
from tests.helpers.daemon import DaemonProcess
from tests.helpers.sim import SimProcess
from tests.helpers.waiting import eventually

CAROL = "15550003333"  # registered, never linked
TEXT = "first line ünïcödé 🎉\nsecond line\n\n\ttab and trailing space \n"


def bodies(sim: SimProcess, phone: str) -> list[str]:
    """Bodies of every message that reached `phone`, in order."""
    return [m["body"] for m in sim.call("received", phone=phone)]


def linked(daemon_factory: Any, sim_factory: Any, tmp: Path) -> tuple[DaemonProcess, SimProcess]:
    """A daemon with session `alice` connected, and the simulator (Alice, Bob, Carol)."""
    sim = sim_factory(time_factor=0.2, accounts=[ALICE, BOB, CAROL])
    d = start(daemon_factory, sim)
    link_by_qr(d, sim, "alice", ALICE, tmp)
    return d, sim


def test_send_by_argument_stdin_and_lines_arrives_exactly(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """Text given as an argument, on stdin (whole, newlines kept) and with --lines (one message
    per line) reaches the phone byte for byte, UTF-8 and emoji included; ids are printed."""
    d, sim = linked(daemon_factory, sim_factory, tmp_path)
    out = ctl(d, "send", "--from", "alice", "+1 555-000-2222", "by argument ✓", "--wait", "sent")
    assert out.returncode == 0, out.stderr
    out = ctl(d, "send", "--from", "alice", BOB, "--wait", "sent", stdin=TEXT.encode())
    assert out.returncode == 0, out.stderr
    out = ctl(d, "send", "--from", "alice", f"{BOB}@c.us", "-", stdin="dash 🙂".encode())
    assert out.returncode == 0, out.stderr
    lines = "uno\ndos 👍🏽\n\ntres\n"
    out = ctl(d, "send", "--from", "alice", BOB, "--lines", "--wait", "sent", stdin=lines.encode())
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) == 3  # one id per message; the empty line is no message
    eventually(lambda: len(bodies(sim, BOB)) >= 6, 15, "6 messages at the phone")
    assert bodies(sim, BOB) == ["by argument ✓", TEXT, "dash 🙂", "uno", "dos 👍🏽", "tres"]


def test_unknown_numbers_and_bad_recipients_are_clear_errors(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """A number not on WhatsApp fails with a message saying so (exit 1); a malformed recipient
    is a usage error (exit 2) that says what a valid one looks like."""
    d, _ = linked(daemon_factory, sim_factory, tmp_path)
    out = ctl(d, "send", "--from", "alice", "+1 555 999 0000", "hello?", "--wait", "sent")
    assert out.returncode == 1 and b"not on WhatsApp" in out.stderr, out.stderr
    out = ctl(d, "send", "--from", "alice", "bob", "hello?")
    assert out.returncode == 2 and b"country code" in out.stderr, out.stderr


def test_acks_move_the_stored_status(daemon_factory: Any, sim_factory: Any, tmp_path: Path) -> None:
    """The phone's acks (server, delivered, read) update the stored message: --wait delivered
    returns, and `message ID` later shows it read."""
    d, _ = linked(daemon_factory, sim_factory, tmp_path)
    out = ctl(d, "--json", "send", "--from", "alice", CAROL, "ack me", "--wait", "delivered")
    assert out.returncode == 0, out.stderr
    mid = json.loads(out.stdout.splitlines()[0])["id"]
    eventually(lambda: d.call("message.get", id=mid)["state"] == "read", 15, "read ack stored")


def test_receive_shows_in_inbox_and_events(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """A reply is stored in the inbox (session, chat, sender, body, time, id) and streamed by
    `events --follow --json` as one NDJSON line."""
    d, sim = linked(daemon_factory, sim_factory, tmp_path)
    w = Watch(d, types=["message"])
    events = popen(d, "--json", "events", "--follow", "--type", "message")
    try:
        eventually(lambda: d.call("daemon.status")["subscribers"] >= 2, 15, "events subscriber")
        text = "a reply ✓\nwith two lines 🎈"
        wa_id = sim.call("inject", to=ALICE, **{"from": BOB}, text=text)
        w.until(lambda e: e["body"] == text, 15, "message event")
        assert events.stdout is not None
        line = Lines(events.stdout.fileno()).next(15) or ""
        event = json.loads(line)
        assert event["body"] == text and event["session"] == "alice"
    finally:
        w.close()
        reap(events)
    inbox = [json.loads(line) for line in ctl(d, "--json", "inbox", "alice").stdout.splitlines()]
    row = inbox[-1]
    assert row["body"] == text and row["sender"] == f"{BOB}@c.us"
    assert row["chat_id"] == f"{BOB}@c.us" and row["session"] == "alice"
    assert row["wa_id"].endswith(wa_id) and row["t"] > 0
    table = ctl(d, "inbox").stdout.decode()
    assert "a reply ✓" in table


def test_events_follow_ends_cleanly(daemon_factory: Any, sim_factory: Any) -> None:
    """`events --follow` stops without a traceback when its reader goes away (SIGPIPE, as in
    `| head -1`) and on Ctrl-C (exit 130)."""
    sim = sim_factory(accounts=[ALICE])
    d = start(daemon_factory, sim)
    pipe = subprocess.Popen(
        " ".join([*CTL, "--socket", str(d.socket), "--json", "events", "--follow"])
        + " | head -n 1",
        shell=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        eventually(lambda: d.call("daemon.status")["subscribers"] >= 1, 15, "events subscriber")
        for i in range(3):  # the first event ends head; the next write meets the closed pipe
            ctl(d, "session", "create", f"s{i}", "--no-start")
            ctl(d, "session", "rm", f"s{i}")
        out, err = pipe.communicate(timeout=30)
    finally:
        reap(pipe)
    assert json.loads(out) == {**json.loads(out), "type": "deleted", "session": "s0"}
    assert b"Traceback" not in err and pipe.returncode == 0

    follow = popen(d, "events", "--follow")
    try:
        eventually(lambda: d.call("daemon.status")["subscribers"] >= 1, 15, "events subscriber")
        follow.send_signal(signal.SIGINT)
        assert follow.wait(15) == 130
        assert follow.stderr is not None and b"Traceback" not in follow.stderr.read()
    finally:
        reap(follow)
