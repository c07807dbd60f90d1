"""LID addressing end to end with real Chromium against LID-migrated simulated accounts:
inbound from a LID carries the number, replies stick across number and LID, sends resolve
numbers the page never saw, `@lid` recipients, LID-mode groups, hidden numbers, a restart."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tests.e2e.test_whatsapp import ctl, link_by_qr
from tests.helpers.daemon import DaemonProcess
from tests.helpers.sim import SimProcess
from tests.helpers.waiting import eventually
from tests.helpers.webhooks import SECRET, Receiver

ALICE, BOB, CAROL = "15550001111", "15550002222", "15550003333"
DAVE, EVE, FRED = "15550004444", "15550005555", "15550006666"
NOBODY = "15559999999"  # not on (simulated) WhatsApp


def inbox_row(d: DaemonProcess, session: str, body: str) -> dict[str, Any]:
    """The inbox row of `session` with that text, once it is stored (bounded)."""

    def find() -> dict[str, Any] | None:
        rows = d.call("inbox.list", session=session, limit=200)
        return next((r for r in rows if r["body"] == body), None)

    return eventually(find, 30, f"{body!r} in {session}'s inbox")  # type: ignore[no-any-return]


def sent_once(sim: SimProcess, phone: str, body: str) -> bool:
    """True when `phone` received `body` exactly once (and not more later is checked by callers)."""
    return Counter(m["body"] for m in sim.call("received", phone=phone))[body] == 1


def send(d: DaemonProcess, to: str, body: str, *args: str) -> dict[str, Any]:
    """`wasupctl send TO BODY ARGS --wait sent`, then the outbox row of that message."""
    out = ctl(d, "--json", "send", to, body, "--wait", "sent", *args)
    assert out.returncode == 0, out.stderr.decode()
    rows = d.call("outbox.list", limit=200)
    return next(r for r in rows if r["body"] == body)  # type: ignore[no-any-return]


def test_lid_contacts_inbox_webhooks_stickiness_and_restart(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """A migrated contact writes first (from its LID): the inbox row, the event's webhook and
    `wasupctl inbox` carry its number and LID; `send +PN --from auto` answers from that session,
    once; by LID too; a restart keeps the mapping and the stickiness."""
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    rx = Receiver([])
    sim = sim_factory(accounts=[ALICE, BOB, CAROL], lid=True)
    hooks = {"url": rx.url, "secret_file": str(secret), "backoff_initial": 0.2}
    d = daemon_factory(browser={"url": sim.url}, webhooks=hooks)
    try:
        link_by_qr(d, sim, "a", ALICE, tmp_path)
        link_by_qr(d, sim, "c", CAROL, tmp_path)
        bob_lid = sim.call("account", phone=BOB)["lid"]
        sim.call("inject", to=CAROL, **{"from": BOB}, text="hello carol")
        row = inbox_row(d, "c", "hello carol")
        assert (row["sender"], row["sender_lid"], row["sender_pn"]) == (
            bob_lid,
            bob_lid,
            f"{BOB}@c.us",
        )

        def hooked() -> dict[str, Any] | None:
            msgs = [p for reqs in rx.by_id().values() for p in reqs if p.get("event") == "message"]
            return next((p for p in msgs if p["data"]["body"] == "hello carol"), None)

        hook = eventually(hooked, 30, "the message webhook")["data"]
        assert (hook["sender_pn"], hook["sender_lid"]) == (f"{BOB}@c.us", bob_lid)
        shown = ctl(d, "inbox", "c").stdout.decode()
        assert f"+{BOB} ({bob_lid}): hello carol" in shown

        # Reply stickiness: the number finds the session the LID wrote to.
        assert send(d, f"+{BOB}", "reply by number")["session"] == "c"
        assert send(d, bob_lid, "reply by lid")["session"] == "c"
        eventually(lambda: sent_once(sim, BOB, "reply by lid"), 30, "reply by lid arrived")
        assert sent_once(sim, BOB, "reply by number")
        assert all(m["from"] == f"{CAROL}@c.us" for m in sim.call("received", phone=BOB))

        contacts = d.call("contacts.list", session="c")
        [bob] = [c for c in contacts if c["lid"] == bob_lid]
        assert (bob["pn"], bob["msgs_in"], bob["msgs_out"]) == (f"{BOB}@c.us", 1, 2)
        listed = json.loads(ctl(d, "contacts", "--session", "c", "--json").stdout)
        assert [(c["pn"], c["lid"]) for c in listed] == [(f"{BOB}@c.us", bob_lid)]
        assert ctl(d, "contacts", "--session", "c").returncode == 0  # the table renders

        d.stop()
        d.start()
        eventually(lambda: d.call("session.get", name="c")["state"] == "connected", 60, "c back")
        eventually(lambda: d.call("session.get", name="a")["state"] == "connected", 60, "a back")
        assert send(d, f"+{BOB}", "after restart")["session"] == "c"
        eventually(lambda: sent_once(sim, BOB, "after restart"), 30, "after restart arrived")
        [bob] = [c for c in d.call("contacts.list", session="c") if c["lid"] == bob_lid]
        assert bob["pn"] == f"{BOB}@c.us" and bob["msgs_out"] == 3
    finally:
        rx.stop()


def test_unseen_numbers_lids_groups_and_hidden_numbers(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """From a migrated account: a number the page never saw resolves and arrives; a number not
    on WhatsApp fails saying so; `send <lid>@lid` arrives; a LID-mode group message names its
    author's number; a contact hiding its number is answered by LID."""
    sim = sim_factory(accounts=[ALICE, DAVE, EVE, FRED], lid=True)
    d = daemon_factory(browser={"url": sim.url})
    link_by_qr(d, sim, "a", ALICE, tmp_path)

    assert send(d, f"+{DAVE}", "never seen")["state"] in ("sent", "delivered", "read")
    eventually(lambda: sent_once(sim, DAVE, "never seen"), 30, "the first message to dave")

    out = ctl(d, "send", f"+{NOBODY}", "nobody", "--from", "a", "--wait", "sent")
    assert out.returncode != 0
    assert f"+{NOBODY} is not on WhatsApp" in out.stderr.decode()

    fred_lid = sim.call("account", phone=FRED)["lid"]
    send(d, fred_lid, "by lid", "--from", "a")
    eventually(lambda: sent_once(sim, FRED, "by lid"), 30, "the message to fred's LID")

    group = sim.call(
        "add_group", group_id="120363000000000001", members=[ALICE, FRED], lid_mode=True
    )
    sim.call("inject", to=group, **{"from": FRED}, text="in the group")
    row = inbox_row(d, "a", "in the group")
    assert row["chat_id"] == group
    assert (row["sender"], row["sender_pn"]) == (fred_lid, f"{FRED}@c.us")

    eve = sim.call("hide_number", phone=EVE)
    sim.call("inject", to=ALICE, **{"from": EVE}, text="guess who")
    row = inbox_row(d, "a", "guess who")
    assert (row["sender_lid"], row["sender_pn"]) == (eve["lid"], None)
    assert send(d, eve["lid"], "hello stranger")["session"] == "a"
    eventually(lambda: sent_once(sim, EVE, "hello stranger"), 30, "the answer to eve's LID")
