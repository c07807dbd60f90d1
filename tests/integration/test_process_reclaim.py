"""`ChromiumHandle.reclaim` with real Chromium: what it frees and what the page still does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import chromium
from wasupd.errors import BrowserError
from wasupd.supervision.process import ChromiumHandle
from wasupd.watchdogs.resources import measure_tree

pytestmark = pytest.mark.chromium
MIB = 1 << 20
# A page that holds 150 MiB of JS heap and then lets go of it (garbage V8 has not collected:
# the page allocates nothing afterwards), and that records the memorypressure event.
PAGE = """() => {
  window.pressure = [];
  window.addEventListener('memorypressure', (e) => window.pressure.push(e.detail.level));
  let held = [];
  for (let i = 0; i < 150; i++) held.push(new Array(131072).fill(i + 0.5));
  held = null;
  return true;
}"""


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[ChromiumHandle]:
    """One ready browser, stopped at the end whatever the test did to it."""
    async with chromium.running(chromium.request(tmp_path / "s")) as h:
        yield h


async def test_reclaim_frees_garbage_and_the_page_lives_on(browser: ChromiumHandle) -> None:
    """A reclaim frees what the page no longer references (most of 150 MiB), returns an exact
    sample, tells the page once about critical memory pressure, and the page still answers."""
    async with asyncio.timeout(30):
        await browser.page.evaluate(PAGE)
        before = await asyncio.to_thread(measure_tree, browser.pid, browser.profile_dir)
        after = await browser.reclaim(10.0)
        assert before.pss_bytes - after.pss_bytes > 100 * MIB, (before, after)
        assert after.processes == before.processes
        assert await browser.page.evaluate("() => window.pressure") == ["critical"]
        assert await browser.page.evaluate("() => 6 * 7") == 42


async def test_reclaim_of_an_exited_browser_says_so(browser: ChromiumHandle) -> None:
    """After the browser is gone a reclaim raises BrowserError naming the exit, not a hang."""
    await browser.stop(5.0)
    with pytest.raises(BrowserError, match="browser exited with status"):
        await browser.reclaim(5.0)
