"""Memory reclaim over DevTools: what a grown page can give back without a restart.

Measured with Chromium 156 (headless, one page holding 150 MiB it no longer references):
- `HeapProfiler.collectGarbage` on the page target runs full, memory-reducing GCs of the
  page's V8 heap synchronously: PSS of the tree fell from 422 to 270 MiB within the call
  (~10 ms). This is what frees most: garbage V8 had not collected yet and weakly held caches.
- `Memory.simulatePressureNotification` (`critical`) tells every process of the browser to
  drop what it caches (Blink's resource and font caches, Skia, the allocators' free pages);
  it answers at once and acts asynchronously. On its own it freed nothing of a V8 heap here.
- `Network.clearBrowserCache` purges the HTTP cache. The daemon runs Chromium with a 1-byte
  disk cache (launcher.LEAN_FLAGS), so there is little to purge; it is cheap and covers
  a browser started with other flags.
- No browser tells a page about memory pressure (there is no web event for it), so the
  reclaim dispatches one itself: a `memorypressure` CustomEvent on the page's window
  (`detail.level` = "critical"), before the forced GC, so that a page that drops caches on it
  has them collected in the same reclaim. Listeners run synchronously inside the evaluate;
  WhatsApp Web does not listen for it, the simulator's growth model does.
- `Memory.forciblyPurgeJavaScriptMemory` is NOT used: it is the OOM intervention and
  destroys the page's JavaScript context (measured: every later evaluate hangs), which would
  cost the session exactly what a reclaim is meant to save.
Everything that makes the page drop memory comes first, so that what it drops is garbage by
the time the forced GC runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from wasupd.errors import BrowserError

PRESSURE_LEVEL = "critical"
PAGE_EVENT = (
    "window.dispatchEvent(new CustomEvent('memorypressure', {detail: {level: 'critical'}}))"
)


async def reclaim(browser: Any, page: Any, timeout: float) -> None:
    """Cache purge, critical memory pressure (browser-wide, then the page's event), forced GC
    of `page`; `BrowserError` when DevTools fails or the whole does not answer in `timeout`."""
    try:
        async with asyncio.timeout(timeout):
            await page._client.send("Network.clearBrowserCache")
            await browser._connection.send(
                "Memory.simulatePressureNotification", {"level": PRESSURE_LEVEL}
            )
            await page._client.send("Runtime.evaluate", {"expression": PAGE_EVENT})
            await page._client.send("HeapProfiler.collectGarbage")
    except TimeoutError:
        raise BrowserError(f"memory reclaim did not finish within {timeout:g} s") from None
    except Exception as exc:
        raise BrowserError(f"memory reclaim failed: {exc}") from exc
