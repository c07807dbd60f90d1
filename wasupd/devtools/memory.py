"""Memory reclaim over DevTools: what a grown page can give back without a restart.

Measured with Chromium 156 (headless, one page holding 150 MiB it no longer references):
- `HeapProfiler.collectGarbage` on the page target runs full, memory-reducing GCs of the
  page's V8 heap synchronously: PSS of the tree fell from 422 to 270 MiB within the call
  (~10 ms). This is what frees most: garbage V8 had not collected yet and weakly held caches.
- `Memory.simulatePressureNotification` (`critical`) tells every process of the browser to
  drop what it caches (Blink's resource and font caches, Skia, the allocators' free pages);
  it answers at once and acts asynchronously. On its own it freed nothing of a V8 heap here.
- `Network.clearBrowserCache` purges the HTTP cache (mostly on disk; the page refetches
  what it needs, WhatsApp Web keeps its bundle in the service worker's cache, not here).
- `Memory.forciblyPurgeJavaScriptMemory` is NOT used: it is the OOM intervention and
  destroys the page's JavaScript context (measured: every later evaluate hangs), which would
  cost the session exactly what a reclaim is meant to save.
The cache purge comes first, so that whatever a page drops in response is garbage by the
time the forced GC runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from wasupd.errors import BrowserError

PRESSURE_LEVEL = "critical"


async def reclaim(browser: Any, page: Any, timeout: float) -> None:
    """Cache purge, critical memory pressure, forced GC of `page`; `BrowserError` when
    DevTools fails or the whole does not answer within `timeout`."""
    try:
        async with asyncio.timeout(timeout):
            await page._client.send("Network.clearBrowserCache")
            await browser._connection.send(
                "Memory.simulatePressureNotification", {"level": PRESSURE_LEVEL}
            )
            await page._client.send("HeapProfiler.collectGarbage")
    except TimeoutError:
        raise BrowserError(f"memory reclaim did not finish within {timeout:g} s") from None
    except Exception as exc:
        raise BrowserError(f"memory reclaim failed: {exc}") from exc
