"""Loaded into a test daemon through PYTHONPATH: each long-lived loop's step raises once.

`WASUPD_TEST_FAULT_LOG` names a file; every call of a patched step appends its loop's name
there, so a test sees that a loop ran again after its fault. The first call of each raises a
RuntimeError no code expects. Nothing here runs unless that variable is set.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

LOG = os.environ.get("WASUPD_TEST_FAULT_LOG", "")


def _faulty(loop: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    calls = 0

    def note() -> bool:
        nonlocal calls
        calls += 1
        with open(LOG, "a") as fh:
            fh.write(loop + "\n")
        return calls == 1

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if note():
            raise RuntimeError(f"injected fault in {loop}")
        return await fn(*args, **kwargs)

    return wrapper


def _install() -> None:
    from wasupd.messaging import sender, service
    from wasupd.profiles import lifecycle
    from wasupd.store import retention, webhooks
    from wasupd.supervision import reaper

    service.Messaging._on_state = _faulty("state_follower", service.Messaging._on_state)  # type: ignore[method-assign]
    sender.Sender.step = _faulty("sender", sender.Sender.step)  # type: ignore[method-assign]
    webhooks.WebhookRepo.due = _faulty("webhook_worker", webhooks.WebhookRepo.due)  # type: ignore[method-assign]
    lifecycle.SealedProfiles.checkpoint = _faulty(  # type: ignore[method-assign]
        "checkpoints", lifecycle.SealedProfiles.checkpoint
    )
    # Retention and the reaper wait minutes between rounds: make the rounds frequent here.
    run = retention.run
    retention.run = _faulty(  # type: ignore[assignment]
        "retention", functools.partial(run, first_delay=0.1, interval=0.3)
    )
    scan = reaper.OrphanReaper._scan
    reaper.OrphanReaper._scan = lambda self: (_note_scan(), scan(self))[1]  # type: ignore[method-assign]
    init = reaper.OrphanReaper.__init__
    reaper.OrphanReaper.__init__ = lambda self, safety_interval=0.3: init(self, 0.3)  # type: ignore[method-assign]


_scans = 0


def _note_scan() -> None:
    """The reaper's scan is synchronous: its first call raises, every call is noted."""
    global _scans
    _scans += 1
    with open(LOG, "a") as fh:
        fh.write("reaper\n")
    if _scans == 1:
        raise RuntimeError("injected fault in reaper")


if LOG:
    _install()
