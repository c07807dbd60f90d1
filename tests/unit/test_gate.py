"""The start gate: at most N browsers starting at once across sessions, nothing leaked."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.unit.runner_fakes import Harness, settle, until
from wasupd.supervision.gate import StartGate, default_limit
from wasupd.supervision.states import SessionState


async def test_slots_are_handed_out_in_order_up_to_the_limit() -> None:
    """Two slots: the first two enter, the others wait in line and enter in arrival order."""
    gate = StartGate(lambda: 2)
    entered: list[int] = []

    async def one(i: int, hold: asyncio.Event) -> None:
        await gate.acquire()
        entered.append(i)
        await hold.wait()
        gate.release()

    holds = [asyncio.Event() for _ in range(5)]
    tasks = [asyncio.ensure_future(one(i, holds[i])) for i in range(5)]
    await settle()
    assert entered == [0, 1] and gate.active == 2 and gate.waiting == 3
    holds[1].set()
    await until(lambda: entered == [0, 1, 2], "third in")
    holds[0].set()
    await until(lambda: entered == [0, 1, 2, 3], "fourth in")
    for h in holds:
        h.set()
    await asyncio.gather(*tasks)
    assert entered == [0, 1, 2, 3, 4] and gate.active == 0 and gate.waiting == 0


async def test_cancelled_waiters_take_no_slot_and_a_raised_limit_applies_at_once() -> None:
    """A waiter cancelled in line, or cancelled just after being handed a slot, leaves the count
    right; raising the limit and waking lets the queue move without a release."""
    limit = [1]
    gate = StartGate(lambda: limit[0])
    await gate.acquire()
    w1 = asyncio.ensure_future(gate.acquire())
    w2 = asyncio.ensure_future(gate.acquire())
    await settle()
    w1.cancel()
    await asyncio.gather(w1, return_exceptions=True)
    assert gate.waiting == 1 and gate.active == 1
    gate.release()  # w2 is handed the slot...
    w2.cancel()  # ...and cancelled before it ran: the slot must come back
    await asyncio.gather(w2, return_exceptions=True)
    assert gate.active == 0
    await gate.acquire()
    w3 = asyncio.ensure_future(gate.acquire())
    await settle()
    assert not w3.done()
    limit[0] = 2
    gate.wake()
    await asyncio.wait_for(w3, 1)
    assert gate.active == 2


def test_default_limit_is_one_per_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert default_limit(0) == 6 and default_limit(3) == 3


async def test_second_session_launches_only_after_the_first_page_loaded(tmp_path: Path) -> None:
    """One slot shared by two sessions: the second does not launch while the first is still
    loading its page, launches once it has, and then both run side by side."""
    gate = StartGate(lambda: 1)
    async with (
        Harness(tmp_path / "a", start_gate=gate) as a,
        Harness(tmp_path / "b", start_gate=gate) as b,
    ):
        a.next_driver = lambda d: setattr(d, "gate", asyncio.Event())
        await a.runner.start()
        await until(lambda: bool(a.drivers), "a attaching")
        await b.runner.start()
        await settle()
        assert "launching" not in b.log and b.state is SessionState.STARTING
        assert gate.active == 1 and gate.waiting == 1
        gate_of_a = a.driver.gate
        assert gate_of_a is not None
        gate_of_a.set()
        await until(lambda: b.driver.report is not None if b.drivers else False, "b attached")
        assert gate.active == 0 and len(a.launcher.alive) == 1 and len(b.launcher.alive) == 1


async def test_stop_while_waiting_in_line_never_launches(tmp_path: Path) -> None:
    """A session stopped while it waits for a start slot leaves the line: no browser, no slot."""
    gate = StartGate(lambda: 1)
    await gate.acquire()  # someone else is starting
    async with Harness(tmp_path, start_gate=gate) as h:
        await h.runner.start()
        await until(lambda: gate.waiting == 1, "in line")
        await h.runner.stop()
        await h.reach(SessionState.STOPPED)
        assert "launching" not in h.log and gate.waiting == 0 and gate.active == 1
    gate.release()
    assert gate.active == 0
