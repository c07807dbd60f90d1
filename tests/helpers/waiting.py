"""The one way tests wait for something: poll a probe until its value is good, with a bound.

`eventually` (blocking) and `eventually_async` (on the event loop) call `probe()` until
`ok(value)` holds and return that value. On timeout they raise `NotYet`, an AssertionError that
names what was awaited and the last value seen (or the last ignored error), so a failure on CI
says where things got stuck. The sleep between probes is pacing, not synchronisation: the
bound is what the test relies on.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

NO_VALUE = object()  # the probe never returned (it only raised ignored errors, or never ran)


class NotYet(AssertionError):
    """Raised when the awaited thing did not happen in time; `what` and `last` say which and how
    far it got (`last` is the last value the probe returned, or the last ignored exception)."""

    def __init__(self, what: str, timeout: float, last: Any) -> None:
        seen = "nothing" if last is NO_VALUE else repr(last)
        super().__init__(f"timed out after {timeout:g} s waiting for {what} (last seen: {seen})")
        self.what = what
        self.last = last


def _truthy(value: Any) -> bool:
    return bool(value)


def eventually(
    probe: Callable[[], Any],
    timeout: float,
    what: str,
    *,
    ok: Callable[[Any], bool] = _truthy,
    interval: float = 0.05,
    ignore: tuple[type[Exception], ...] = (),
) -> Any:
    """Call `probe()` until `ok(value)` (default: the value is truthy); that value.

    Exceptions of the `ignore` types count as "not yet"; any other propagates at once. Raises
    `NotYet` after `timeout` seconds. The probe is called at least once.
    """
    deadline = time.monotonic() + timeout
    last: Any = NO_VALUE
    while True:
        try:
            last = probe()
            if ok(last):
                return last
        except ignore as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise NotYet(what, timeout, last)
        time.sleep(interval)  # pacing between probes; the deadline above is the bound


async def eventually_async(
    probe: Callable[[], Awaitable[Any] | Any],
    timeout: float,
    what: str,
    *,
    ok: Callable[[Any], bool] = _truthy,
    interval: float = 0.05,
    ignore: tuple[type[Exception], ...] = (),
) -> Any:
    """`eventually` on the event loop: `probe()` may return a value or an awaitable.

    The whole wait, including a probe that hangs, is bounded by `timeout` (a probe still running
    at the deadline is cancelled).
    """
    last: Any = NO_VALUE
    bound = asyncio.timeout(timeout)
    try:
        async with bound:
            while True:
                try:
                    value = probe()
                    last = await value if inspect.isawaitable(value) else value
                    if ok(last):
                        return last
                except ignore as exc:
                    last = exc
                await asyncio.sleep(interval)  # pacing between probes; the timeout is the bound
    except TimeoutError:
        if not bound.expired():
            raise  # the probe's own timeout, not ours
        raise NotYet(what, timeout, last) from None
