"""Campaigns with real Chromium and the simulator: shares by the numbers' ages inside a send
window, exactly once through kill -9 and a logout, pause/resume/cancel, opt-outs, replies, a
refused CSV and a dry run that matches what follows. The simulator's `received` lists judge.

Time is compressed by pacing, not by a clock: pauses of a few hundredths of a second, minute and
hour limits high enough for a campaign to run in seconds, and the age caps (per day) small, so
that they, not time, decide each number's share.
"""

from __future__ import annotations

import json
import sqlite3
import time
from bisect import bisect_left
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_whatsapp import ctl, link_by_qr, state
from tests.helpers.daemon import DaemonProcess
from tests.helpers.sim import SimProcess
from tests.helpers.waiting import eventually

DAY = 86400.0
SENDERS = {"new": "15550001001", "young": "15550001002", "old": "15550001003"}
AGES = {"new": 1.0, "young": 10.0, "old": 40.0}  # days: the three age caps of pacing
# Caps close enough that the oldest number's share (135 of 300) stays within what one page can
# send in the compressed window; far enough apart that the shares differ by more than 10 %.
CAPS = {"new": 70, "young": 100, "old": 140}
# Fast pacing: pauses of 10-50 ms; minute and hour limits that allow 20 sends a second, so the
# campaign's spacing (the largest gap / 0.6) is 1/12 s. The day caps by age are CAPS in the test
# of shares; elsewhere they are out of the way.
SEND = {
    "pacing": True,
    "per_minute": 1200,
    "per_hour": 72000,
    "jitter_min": 0.01,
    "jitter_max": 0.05,
    "new_number_per_day": 1000,
}
AGE_CAPS = {
    "new_number_per_day": CAPS["new"],
    "young_number_per_day": CAPS["young"],
    "old_number_per_day": CAPS["old"],
}
DONE = ("sent", "delivered", "read")


def contacts(n: int, base: int = 0) -> list[str]:
    """`n` recipient numbers (accounts of the simulator)."""
    return [f"1555200{base + i:04d}" for i in range(n)]


def write_csv(path: Path, phones: list[str]) -> Path:
    """A recipients file with `phone` and `name` columns (name r<line>)."""
    path.write_text("phone,name\n" + "".join(f"+{p},r{i}\n" for i, p in enumerate(phones)))
    return path


def rig(
    daemon_factory: Any,
    sim_factory: Any,
    tmp_path: Path,
    numbers: dict[str, str],
    recipients: list[str],
    **sections: dict[str, Any],
) -> tuple[DaemonProcess, SimProcess]:
    """A simulator with the numbers and recipients, a daemon with every number linked."""
    sim = sim_factory(accounts=[*numbers.values(), *recipients])
    send = {**SEND, **sections.pop("send", {})}
    d = daemon_factory(
        browser={"url": sim.url}, restart={"backoff_initial": 0.2}, send=send, **sections
    )
    for name, phone in numbers.items():
        link_by_qr(d, sim, name, phone, tmp_path)
    return d, sim


def set_ages(d: DaemonProcess, ages: dict[str, float]) -> None:
    """Make the numbers `ages` days old: their first link time, with the daemon stopped."""
    d.stop()
    now = time.time()
    with sqlite3.connect(d.state_dir / "wasupd.db") as db:
        for name, days in ages.items():
            db.execute("UPDATE sessions SET linked_at = ? WHERE name = ?", (now - days * DAY, name))
    d.start()
    for name in ages:
        d.wait_state(name, "connected", 60)


def create(d: DaemonProcess, name: str, csv: Path, *args: str) -> dict[str, Any]:
    """`wasupctl --json campaign create`; its plan."""
    out = ctl(d, "--json", "campaign", "create", name, "--recipients", str(csv), *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def report(d: DaemonProcess, name: str) -> list[dict[str, Any]]:
    """The campaign's rows, one per recipient, each with its `number` (digits, as the simulator
    names accounts; `phone` is the CSV's own spelling)."""
    rows = d.call("campaign.report", name=name, limit=10000)
    return [{**r, "number": r["recipient"].split("@")[0]} for r in rows]


def finished(d: DaemonProcess, name: str, timeout: float) -> dict[str, Any]:
    """Wait for the campaign to finish; `campaign.get`."""
    return eventually(  # type: ignore[no-any-return]
        lambda: d.call("campaign.get", name=name),
        timeout,
        f"campaign {name} finished",
        ok=lambda c: c["state"] == "finished",
        interval=0.25,
    )


def received(sim: SimProcess, phones: list[str], marker: str) -> Counter[str]:
    """How many campaign messages (bodies containing `marker`) each phone received."""
    return Counter(p for p in phones for m in sim.call("received", phone=p) if marker in m["body"])


def exactly_once(sim: SimProcess, phones: list[str], marker: str) -> None:
    """Every phone received exactly one message containing `marker`."""
    counts = received(sim, phones, marker)
    assert {p: counts[p] for p in phones if counts[p] != 1} == {}


def most_in(times: list[float], span: float) -> int:
    """The most of the sorted `times` inside any `span` seconds."""
    return max(
        (i + 1 - bisect_left(times, t - span + 1e-9) for i, t in enumerate(times)), default=0
    )


def done(d: DaemonProcess, name: str) -> int:
    """How many of the campaign's messages were sent (the daemon's count)."""
    totals = d.call("campaign.get", name=name)["totals"]
    return sum(int(totals.get(s, 0)) for s in DONE)


def window_around_now() -> tuple[str, float, float]:
    """A local send window that opened a minute ago and closes 45-105 s from now (at a minute,
    as windows do): the window string, its open and close (unix time)."""
    now = time.time()
    opens = now - now % 60 - 60
    closes = now - now % 60 + (60 if 60 - now % 60 >= 45 else 120)

    def hhmm(t: float) -> str:
        return time.strftime("%H:%M", time.localtime(t))

    return f"{hhmm(opens)}-{hhmm(closes)}", opens, closes


@pytest.mark.timeout(240)  # the window's rest (45-105 s) is the campaign's length
def test_three_numbers_by_age_in_the_window_exactly_once_as_the_dry_run_said(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """Numbers 1, 10 and 40 days old share 300 recipients within 10 % of their shares of
    capacity (the age caps 70/100/140), none exceeds its limits, every send is inside the
    window, each recipient gets exactly one message, and the dry run's plan is what happens."""
    phones = contacts(300)
    d, sim = rig(daemon_factory, sim_factory, tmp_path, SENDERS, phones, send=AGE_CAPS)
    set_ages(d, AGES)
    window, opens, closes = window_around_now()
    csv = write_csv(tmp_path / "r.csv", phones)
    args = ("--text", "Hi {name}, campaign A", "--from", "new,young,old", "--window", window)
    dry = create(d, "a", csv, *args, "--dry-run")
    assert d.call("campaign.list") == []  # the dry run queued nothing
    plan = create(d, "a", csv, *args)
    finished(d, "a", closes - time.time() + 60)
    exactly_once(sim, phones, "campaign A")

    rows = report(d, "a")
    assert len(rows) == 300 and all(r["state"] in DONE for r in rows), Counter(
        r["state"] for r in rows
    )
    by_number = Counter(r["session"] for r in rows)
    total_cap = sum(CAPS.values())
    for name, cap in CAPS.items():
        share, expected = by_number[name] / 300, cap / total_cap
        assert abs(share - expected) <= 0.1 * expected, (name, by_number, CAPS)
        # The plan's counts, then and in the dry run, are what each number sent.
        assert plan["numbers"][name]["count"] == dry["numbers"][name]["count"] == by_number[name]
        assert plan["numbers"][name]["days"] == dry["numbers"][name]["days"] == 1
        times = sorted(r["sent_at"] for r in rows if r["session"] == name)
        assert most_in(times, DAY) <= cap
        assert most_in(times, 60) <= SEND["per_minute"]
        assert most_in(times, 3600) <= SEND["per_hour"]
        for r in rows:
            if r["session"] == name:
                # Sent no earlier than planned, and inside the window.
                assert r["sent_at"] >= r["planned_at"] - 0.01, r
                assert opens <= r["sent_at"] < closes, (r, window)
    # The first and last sends are where both plans put them (the dry run's moved by the
    # second or so between the two commands).
    sent = [r["sent_at"] for r in rows]
    for p in (plan, dry):
        assert abs(min(sent) - p["first"]) < 5 and abs(max(sent) - p["last"]) < 5, (p, sent)


def test_kill9_twice_mid_campaign_still_exactly_once(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """The daemon killed with SIGKILL twice while a campaign of 150 is being sent, restarted
    each time: every recipient still receives exactly one message."""
    numbers = {"a": SENDERS["new"], "b": SENDERS["old"]}
    phones = contacts(150)
    d, sim = rig(daemon_factory, sim_factory, tmp_path, numbers, phones)
    create(d, "k", write_csv(tmp_path / "r.csv", phones), "--text", "kill {name}", "--from", "a,b")
    for at_least in (30, 90):
        eventually(
            lambda n=at_least: done(d, "k") >= n,  # type: ignore[misc]
            60,
            f"{at_least} sent before the kill",
            interval=0.1,
        )
        d.kill9()
        d.start()
    finished(d, "k", 90)
    exactly_once(sim, phones, "kill")
    assert all(r["state"] in DONE for r in report(d, "k"))


def test_a_number_logged_out_mid_campaign_hands_its_recipients_to_the_others(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """Of three numbers, one is logged out after a few sends: the other two send its unsent
    recipients; nobody receives twice and only a send cut off by the logout stays unsure."""
    numbers = {"a": SENDERS["new"], "b": SENDERS["young"], "c": SENDERS["old"]}
    phones = contacts(150)
    d, sim = rig(daemon_factory, sim_factory, tmp_path, numbers, phones)
    create(d, "l", write_csv(tmp_path / "r.csv", phones), "--text", "lo {name}", "--from", "a,b,c")

    def sent_by_c() -> int:
        return sum(1 for r in report(d, "l") if r["session"] == "c" and r["state"] in DONE)

    eventually(lambda: sent_by_c() >= 5, 60, "c sent a few", interval=0.2)
    sim.call("logout", phone=numbers["c"])
    eventually(lambda: state(d, "c") == "logged_out", 30, "c logged out")

    def still_open(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
        # Queued anywhere, or being sent by a live number (a send cut off by the logout may
        # stay "sending": only c's page could settle it).
        return [
            (r["session"], r["state"])
            for r in rows
            if r["state"] == "queued" or (r["state"] == "sending" and r["session"] != "c")
        ]

    rows = eventually(
        lambda: report(d, "l"), 60, "the others to finish c's recipients",
        ok=lambda rs: not still_open(rs), interval=0.25,
    )  # fmt: skip
    handed = [r for r in rows if r["handed_over"]]
    assert handed and all(r["session"] in ("a", "b") for r in handed), handed[:3]
    unsure = [r for r in rows if r["state"] not in DONE]
    assert len(unsure) <= 1 and all(r["session"] == "c" and r["state"] == "sending" for r in unsure)
    counts = received(sim, phones, "lo r")
    assert all(n <= 1 for n in counts.values())
    assert [r["number"] for r in rows if r["state"] in DONE and counts[r["number"]] != 1] == []


def test_pause_resume_and_cancel(daemon_factory: Any, sim_factory: Any, tmp_path: Path) -> None:
    """A paused campaign sends nothing past its next planned time and, resumed, finishes with
    everyone exactly once; a cancelled one cancels its queued messages, which are never sent."""
    phones = contacts(80)
    d, sim = rig(
        daemon_factory, sim_factory, tmp_path, {"a": SENDERS["old"]}, phones,
        send={"jitter_min": 0.05, "jitter_max": 0.1},
    )  # fmt: skip
    create(d, "p", write_csv(tmp_path / "p.csv", phones[:40]), "--text", "pz {name}")
    eventually(lambda: done(d, "p") >= 5, 60, "a few sent", interval=0.1)
    assert d.call("campaign.pause", name="p")["state"] == "paused"

    def quiet() -> list[dict[str, Any]]:
        rows = report(d, "p")
        return [] if any(r["state"] == "sending" for r in rows) else rows

    rows = eventually(quiet, 30, "the send in progress to finish")
    held = [r for r in rows if r["state"] == "queued"]
    assert held, "paused too late to show anything"
    before = sum(received(sim, phones, "pz").values())
    assert before == 40 - len(held)
    due = min(r["planned_at"] for r in held) + 1.0
    eventually(lambda: time.time() > due, 30, "past the next planned send")
    assert sum(received(sim, phones, "pz").values()) == before  # nothing went out while paused
    assert d.call("campaign.resume", name="p")["state"] == "running"
    finished(d, "p", 60)
    exactly_once(sim, phones[:40], "pz")

    create(d, "x", write_csv(tmp_path / "x.csv", phones[40:]), "--text", "cx {name}")
    eventually(lambda: done(d, "x") >= 3, 60, "a few of x sent", interval=0.1)
    out = ctl(d, "campaign", "cancel", "x")
    assert out.returncode == 0, out.stderr
    rows = eventually(
        lambda: report(d, "x"), 30, "x settled",
        ok=lambda rs: all(r["state"] in (*DONE, "cancelled") for r in rs),
    )  # fmt: skip
    cancelled = [r["number"] for r in rows if r["state"] == "cancelled"]
    assert cancelled and d.call("campaign.get", name="x")["state"] == "cancelled"
    counts = received(sim, phones[40:], "cx")
    assert all(counts[p] == 0 for p in cancelled)
    assert all(counts[r["number"]] == 1 for r in rows if r["state"] in DONE)


def test_opt_outs_before_and_during_and_replies_counted(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """A contact on the suppression list before the campaign is skipped (opted out); one who
    writes ` stop ` during it has its queued message cancelled and is confirmed once; a
    recipient who answers is counted as replied and the answer reaches the inbox."""
    phones = contacts(40)
    d, sim = rig(
        daemon_factory, sim_factory, tmp_path, {"a": SENDERS["old"]}, phones,
        send={"jitter_min": 0.1, "jitter_max": 0.15},
        optout={"confirmation": "You will get no more messages."},
    )  # fmt: skip
    out = ctl(d, "optout", "add", phones[0])
    assert out.returncode == 0, out.stderr
    plan = create(d, "o", write_csv(tmp_path / "o.csv", phones), "--text", "oo {name}")
    assert plan["opted_out"] == 1 and plan["recipients"] == 39
    late = phones[-1]  # the last planned: it writes STOP before its turn
    for _ in range(2):
        sim.call("inject", to=SENDERS["old"], **{"from": late}, text=" stop ")
    eventually(
        lambda: any(r["number"] == late and r["state"] == "opted_out" for r in report(d, "o")),
        30,
        "the late recipient opted out",
    )
    eventually(lambda: received(sim, [phones[1]], "oo")[phones[1]] == 1, 30, "r1 got its message")
    sim.call("inject", to=SENDERS["old"], **{"from": phones[1]}, text="thanks!")
    c = finished(d, "o", 60)
    assert c["totals"]["opted_out"] == 2 and c["totals"]["replied"] == 1, c["totals"]
    counts = received(sim, phones, "oo")
    assert counts[phones[0]] == 0 and counts[late] == 0
    exactly_once(sim, phones[1:-1], "oo")
    confirmations = [m for m in sim.call("received", phone=late) if "no more" in m["body"]]
    assert len(confirmations) == 1
    rows = {r["number"]: r for r in report(d, "o")}
    assert rows[phones[1]]["replied_at"] and not rows[phones[2]]["replied_at"]
    inbox = d.call("inbox.list", session="a")
    assert any(m["body"] == "thanks!" for m in inbox)


def test_a_csv_with_errors_is_refused_by_line_and_nothing_is_queued(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """Bad numbers, a duplicate and a row missing a field are listed with their lines; exit 2,
    no campaign and no outbox message."""
    phones = contacts(5)
    d, _ = rig(daemon_factory, sim_factory, tmp_path, {"a": SENDERS["old"]}, phones)
    csv = tmp_path / "bad.csv"
    csv.write_text(
        "phone,name\n"
        f"{phones[0]},ann\n"
        "not-a-number,bob\n"
        f"{phones[1]},\n"
        f"{phones[2]},cy\n"
        f"+{phones[0]},ann again\n"
    )
    out = ctl(d, "campaign", "create", "bad", "--recipients", str(csv), "--text", "Hi {name}")
    assert out.returncode == 2, out.stderr
    err = out.stderr.decode()
    assert "line 3:" in err and "line 4:" in err and "line 6: duplicate of line 2" in err, err
    assert "line 2:" not in err.replace("of line 2", "") and "line 5:" not in err, err
    assert "nothing was queued" in err
    assert d.call("campaign.list") == []
    assert d.call("outbox.list", session="a", limit=100) == []
    # The same name is free: a corrected file is accepted.
    write_csv(csv, phones)
    assert create(d, "bad", csv, "--text", "Hi {name}")["recipients"] == 5
