"""The driver's liveness probe, reload and crash reports with real Chromium against the simulator."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.integration.test_driver_linking import A, rig
from wasupd.browser.driver import SELF_PING_TEXT
from wasupd.errors import BrowserError


async def test_probe_passes_when_connected_and_fails_when_not_linked(tmp_path: Path) -> None:
    """Before linking the probe fails naming the Socket state; once connected it passes."""
    async with rig(tmp_path) as r:
        await r.reports.first("qr")
        with pytest.raises(BrowserError, match="WhatsApp Web's state is UNPAIRED"):
            await r.driver.probe(2.0)
        await r.linked(A)
        t0 = time.monotonic()
        await r.driver.probe(2.0)
        assert time.monotonic() - t0 < 1.0


async def test_silent_stall_fails_the_probe_in_time(tmp_path: Path) -> None:
    """When the server silently swallows everything (state still CONNECTED), the probe fails
    within its timeout, naming the unanswered server round trip; a reload afterwards leaves the
    browser up, and the probe passes once traffic flows."""
    async with rig(tmp_path) as r:
        await r.linked(A)
        await r.sim.control("fault", {"kind": "stall", "phone": A})
        t0 = time.monotonic()
        with pytest.raises(BrowserError, match="existence query for the own number"):
            await r.driver.probe(1.0)
        assert 0.9 < time.monotonic() - t0 < 2.0
        # The abandoned page call must not take the DevTools connection (and Chromium) down
        # when the reload answers it late.
        before = len(r.reports.of("state", "connected"))
        async with asyncio.timeout(15):
            await r.driver.reload()
        await r.reports.wait(lambda: len(r.reports.of("state", "connected")) > before, 15)
        assert not r.handle.exited
        await r.sim.control("clear_fault", {"kind": "stall"})
        async with asyncio.timeout(10):
            await r.driver.probe(2.0)


async def test_reload_reinjects_and_reconnects(tmp_path: Path) -> None:
    """After reload() the script is back in the new document: connected is reported again."""
    async with rig(tmp_path) as r:
        await r.linked(A)
        before = len(r.reports.of("state", "connected"))
        async with asyncio.timeout(15):
            await r.driver.reload()
        await r.reports.wait(lambda: len(r.reports.of("state", "connected")) > before, 15)
        async with asyncio.timeout(10):
            await r.driver.probe(2.0)


async def test_self_ping_sends_at_most_one_per_interval(tmp_path: Path) -> None:
    """With health.self_ping the probe also messages the account itself, once per probe_interval."""
    async with rig(tmp_path, health={"self_ping": True, "probe_interval": 600.0}) as r:
        await r.linked(A)
        async with asyncio.timeout(10):
            await r.driver.probe(3.0)
            await r.driver.probe(3.0)
        mine = [
            m for m in await r.sim.control("received", {"phone": A}) if m["body"] == SELF_PING_TEXT
        ]
        assert len(mine) == 1


async def test_renderer_crash_is_reported_once(tmp_path: Path) -> None:
    """A renderer crash (DevTools Page.crash) is reported as a single "crash"; a page call after
    it fails with BrowserError instead of hanging."""
    async with rig(tmp_path) as r:
        await r.linked(A)
        page = r.handle.page
        # Page.crash never answers (the renderer is gone): send without awaiting the reply.
        crash = asyncio.ensure_future(page._client.send("Page.crash"))
        try:
            report = await r.reports.first("crash")
            assert "crash" in report.data["reason"]
            with pytest.raises(BrowserError):
                await r.driver.probe(2.0)
            assert len(r.reports.of("crash")) == 1
        finally:
            crash.cancel()
            await asyncio.gather(crash, return_exceptions=True)
