"""The polling helper: returns the first good value, and a timeout names what and the last value."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.helpers.waiting import NotYet, eventually, eventually_async


def test_returns_the_first_value_that_is_ok() -> None:
    """The probe is called until `ok` holds; that value comes back."""
    counter = itertools.count()
    assert eventually(lambda: next(counter), 5, "3", ok=lambda n: n >= 3, interval=0) == 3


def test_timeout_names_what_and_the_last_value() -> None:
    """On timeout the AssertionError says what was awaited and what the probe last returned."""
    with pytest.raises(NotYet, match=r"waiting for the answer \(last seen: 41\)") as info:
        eventually(lambda: 41, 0.05, "the answer", ok=lambda n: n == 42, interval=0.01)
    assert isinstance(info.value, AssertionError) and info.value.last == 41


def test_ignored_errors_are_not_yet_and_others_propagate() -> None:
    """Errors of the `ignore` types are retried (and reported); any other stops the wait."""

    def refused() -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(NotYet, match="ConnectionRefusedError"):
        eventually(refused, 0.05, "a connection", ignore=(OSError,), interval=0.01)
    with pytest.raises(KeyError):
        eventually(lambda: {}["x"], 5, "x", ignore=(OSError,))


async def test_async_twin_awaits_probes_and_bounds_a_hanging_one() -> None:
    """Awaitable probes are awaited; one that never returns is cut off at the bound."""
    values = iter([0, 0, 7])

    async def probe() -> int:
        return next(values)

    assert await eventually_async(probe, 5, "7", interval=0) == 7
    with pytest.raises(NotYet, match="a hanging probe"):
        await eventually_async(lambda: asyncio.Event().wait(), 0.1, "a hanging probe")


async def test_async_twin_lets_a_probe_timeout_through() -> None:
    """A TimeoutError of the probe's own (not the bound's) propagates as it is."""

    async def probe() -> None:
        raise TimeoutError("the probe's own")

    with pytest.raises(TimeoutError, match="the probe's own"):
        await eventually_async(probe, 5, "x")
