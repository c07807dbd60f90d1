"""Long-lived background loops that survive their own faults.

A daemon that must stay up for months cannot let one bug in one background loop (the state
follower, a sender, the webhook worker, retention, the reaper) cancel everything else. Each such
loop runs through `keep_running`: an unexpected exception is logged with the loop's name,
waited out with a growing pause, and the loop is entered again. Only cancellation ends it,
as supervisord keeps a fault inside the one process that had it (`supervisord.py::runforever`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("wasupd.loops")

FIRST_PAUSE = 1.0  # seconds before the first re-entry after a fault
MAX_PAUSE = 60.0  # the pause doubles per fault in a row, up to this
STABLE_AFTER = 300.0  # a loop that ran this long without a fault starts over at FIRST_PAUSE


async def keep_running(
    name: str,
    body: Callable[[], Awaitable[None]],
    *,
    first_pause: float = FIRST_PAUSE,
    max_pause: float = MAX_PAUSE,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run `body()` until it returns; after an exception log `loop_fault`, pause, run it again.

    `body` is the loop itself (it normally never returns). Cancellation propagates at once,
    from `body` or from a pause. The pause doubles for faults in a row and starts over once the
    body has run for `STABLE_AFTER` seconds.
    """
    pause = first_pause
    while True:
        entered = time.monotonic()
        try:
            await body()
            return
        except Exception:
            if time.monotonic() - entered >= STABLE_AFTER:
                pause = first_pause
            log.exception("loop_fault", loop=name, resume_in=pause)
        await sleep(pause)
        log.info("loop_resumed", loop=name)
        pause = min(pause * 2, max_pause)
