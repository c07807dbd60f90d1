"""The runner's pure parts: what a page report means, the record of intent, the doorbell."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wasupd.supervision.intent import Intent
from wasupd.supervision.interrupt import Doorbell, companions
from wasupd.supervision.life import BrowserLife
from wasupd.supervision.rules import End, Facts, Outcome, decide, new_qr_generation
from wasupd.supervision.seams import DriverKind, DriverReport
from wasupd.supervision.states import SessionState

S = SessionState


def report(kind: DriverKind, value: str = "", **data: Any) -> DriverReport:
    return DriverReport(kind=kind, value=value, data=data)


def facts(state: SessionState = S.STARTING, *, linking: bool = False) -> Facts:
    return Facts(state=state, linking=linking)


def test_a_qr_offers_itself_and_moves_to_qr_once() -> None:
    """A QR is on offer and linking begins; the state moves to qr only when not there yet."""
    d = decide(report("qr", payload="p", rotation=0), facts())
    assert (d.state, d.qr, d.linking) == (S.QR, {"payload": "p", "rotation": 0}, True)
    again = decide(report("qr", payload="q", rotation=1), facts(S.QR, linking=True))
    assert again.state is None and again.qr == {"payload": "q", "rotation": 1}


def test_only_the_first_qr_of_a_generation_counts() -> None:
    """Rotation 0 starts a generation (counted against the hourly limit); later refs do not."""
    assert new_qr_generation(report("qr", rotation=0))
    assert not new_qr_generation(report("qr", rotation=3))
    assert not new_qr_generation(report("state", "qr"))


def test_connecting_after_linking_asks_for_a_checkpoint() -> None:
    """Connected after a QR or code was shown: the link is sealed at the next check."""
    d = decide(report("state", "connected"), facts(S.SYNCING, linking=True))
    assert (d.state, d.connected, d.checkpoint, d.linking) == (S.CONNECTED, True, True, False)
    assert d.reason == "WhatsApp is connected"


def test_a_restored_session_connects_without_a_checkpoint() -> None:
    """A restore (no QR shown) clears the QR but seals nothing extra."""
    d = decide(report("state", "connected", reason="synced"), facts(S.STARTING))
    assert (d.connected, d.checkpoint, d.reason) == (True, False, "synced")


def test_the_same_state_is_no_transition() -> None:
    """A page repeating the current state changes nothing but its facts."""
    d = decide(report("state", "syncing"), facts(S.SYNCING, linking=True))
    assert d.state is None and d.linking is True


def test_a_qr_state_starts_linking() -> None:
    """The page saying qr means the next connect is a fresh link."""
    d = decide(report("state", "qr"), facts(S.STARTING))
    assert (d.state, d.linking) == (S.QR, True)


@pytest.mark.parametrize("value", ["stopped", "failed", "backoff", "logged_out", "starting"])
def test_the_page_cannot_name_a_non_live_state(value: str) -> None:
    """Only live states come from the page: stopping, failing or starting is the runner's."""
    d = decide(report("state", value), facts(S.CONNECTED))
    assert d.state is None and d.end is None and not d.unknown_state


def test_an_unknown_page_state_is_named_for_the_log() -> None:
    """A state this daemon does not know changes nothing and is reported for the log."""
    d = decide(report("state", "weird"), facts(S.CONNECTED))
    assert d.state is None and d.unknown_state == "weird"


def test_a_code_is_on_offer_and_links() -> None:
    """A pairing code is on offer; the state stays (the page reports qr itself)."""
    d = decide(report("code", code="ABCD1234"), facts(S.QR))
    assert (d.code, d.linking, d.state) == ({"code": "ABCD1234"}, True, None)


@pytest.mark.parametrize(
    ("kind", "outcome", "default"),
    [
        ("logout", "logout", "logged out by the phone"),
        ("failed", "failed", "refused by WhatsApp"),
        ("crash", "death", "page crashed (Target closed)"),
    ],
)
def test_ends_carry_the_page_reason_or_a_default(
    kind: DriverKind, outcome: Outcome, default: str
) -> None:
    """Logout, refusal and crash end the watch, with the page's reason when it gave one."""
    assert decide(report(kind), facts(S.CONNECTED)).end == End(outcome, default)
    given = decide(report(kind, reason="why"), facts(S.CONNECTED)).end
    assert given is not None and given.reason == "why"


@pytest.mark.parametrize("kind", ["message", "ack", "activity"])
def test_signs_of_life_change_nothing(kind: DriverKind) -> None:
    """Messages, acks and activity feed liveness only."""
    d = decide(report(kind), facts(S.CONNECTED, linking=True))
    assert (d.state, d.end, d.qr, d.code, d.linking) == (None, None, None, None, True)


def test_intent_last_request_wins_but_not_over_close() -> None:
    """Each request replaces the last; once closing, nothing replaces it."""
    i = Intent()
    i.request("run")
    assert i.wants_run and not i.pending
    i.request("restart", "new config")
    assert i.restart_pending and i.reason == "new config"
    i.request("close")
    i.request("run")
    assert i.closing and not i.wants_run
    assert i.take() == End("close", "daemon shutdown")
    assert i.take() is None and i.closing


def test_intent_take_turns_a_logout_into_an_unlinking_end() -> None:
    """A requested logout unlinks the device before the browser stops."""
    i = Intent()
    i.request("logout")
    assert i.take() == End("logout", "logged out on request", unlink=True)


def test_intent_settle_clears_what_is_pending() -> None:
    """After the loop gave up nothing runs and no command waits."""
    i = Intent()
    i.request("restart")
    i.settle()
    assert (i.wants_run, i.pending, i.take()) == (False, False, None)


async def test_doorbell_wait_sees_a_ring_from_before_it_began() -> None:
    """A ring between taking `since` and waiting is not lost."""
    bell = Doorbell()
    since = bell.count
    bell.ring()
    async with asyncio.timeout(1):
        await bell.wait(since)


async def test_doorbell_race_cuts_the_task_on_a_ring() -> None:
    """A ring cancels the raced task and the race returns with it done."""
    bell = Doorbell()
    task = asyncio.ensure_future(asyncio.Event().wait())
    async with asyncio.timeout(1), companions(bell.race(task, bell.count)) as (race,):
        await asyncio.sleep(0)
        bell.ring()
        await race
    assert task.cancelled()


async def test_doorbell_race_returns_a_finished_task() -> None:
    """A task that ends first keeps its result."""
    bell = Doorbell()

    async def value() -> int:
        return 7

    task = asyncio.ensure_future(value())
    async with asyncio.timeout(1):
        await bell.race(task, bell.count)
    assert task.result() == 7


async def test_doorbell_race_after_a_ring_never_runs_the_task() -> None:
    """A request already in: the task is cancelled before it ever runs."""
    bell = Doorbell()
    since = bell.count
    bell.ring()
    ran: list[bool] = []

    async def work() -> None:
        ran.append(True)

    task = asyncio.ensure_future(work())
    await bell.race(task, since)
    assert task.cancelled() and not ran


async def test_doorbell_race_ends_when_another_future_is_done() -> None:
    """`also` (a browser's exit) ends the race too."""
    bell = Doorbell()
    exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    exited.set_result(None)
    task = asyncio.ensure_future(asyncio.Event().wait())
    async with asyncio.timeout(1):
        await bell.race(task, bell.count, exited)
    assert task.cancelled()


def test_reports_waiting_counts_what_the_watch_has_not_handled() -> None:
    """Every report the driver hands over waits in the watch's queue until handled: the count
    a soak watches to tell a daemon that keeps up from one that falls behind."""
    life = BrowserLife()
    assert life.reports_waiting == 0
    for _ in range(3):
        life._report(DriverReport(kind="ack", data={"id": "x", "ack": 2}))
    assert life.reports_waiting == 3
    life._drain_events()
    assert life.reports_waiting == 0
