"""pyppeteer's Browser and Page over a `PipeTransport` instead of a websocket.

`PipeConnection` also makes pyppeteer survive callers that give up: pyppeteer 2.0 answers a
late response by `set_result` on the caller's future, and if the caller was cancelled (an
`asyncio.timeout` around a ping or an evaluate) that raises `InvalidStateError` inside the
receive loop, which ends the loop and leaves every later call hanging. Late answers to calls
nobody awaits any more are dropped here instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from pyppeteer.browser import Browser
from pyppeteer.connection import Connection
from pyppeteer.page import Page

from wasupd.devtools.pipe import PipeTransport
from wasupd.errors import BrowserError

# A common laptop size: WhatsApp Web lays itself out for desktop screens.
VIEWPORT = {"width": 1280, "height": 860}


def _drop_abandoned(callbacks: dict[int, asyncio.Future[Any]]) -> None:
    """Forget calls whose caller already gave up (their future is done: cancelled)."""
    for key in [k for k, fut in callbacks.items() if fut.done()]:
        del callbacks[key]


class PipeConnection(Connection):  # type: ignore[misc]
    """pyppeteer's Connection with the websocket replaced by the DevTools pipe."""

    def __init__(self, transport: PipeTransport, loop: asyncio.AbstractEventLoop) -> None:
        # Deliberately not calling Connection.__init__: it would open a websocket.
        super(Connection, self).__init__()
        self._url = "pipe:"
        self._lastId = 0
        self._callbacks: dict[int, asyncio.Future[Any]] = {}
        self._delay = 0
        self._loop = loop
        self._sessions: dict[str, Any] = {}
        self._connected = False
        self._ws = transport
        self._closeCallback = None
        self._recv_fut = loop.create_task(self._recv_loop())

    def _on_response(self, msg: dict[str, Any]) -> None:
        callback = self._callbacks.get(msg.get("id", -1))
        if callback is not None and callback.done():  # the caller gave up: drop the late answer
            del self._callbacks[msg["id"]]
            return
        super()._on_response(msg)

    def _on_query(self, msg: dict[str, Any]) -> None:
        if msg.get("method") == "Target.detachedFromTarget":
            session = self._sessions.get(msg.get("params", {}).get("sessionId"))
            if session is not None:
                _drop_abandoned(session._callbacks)
        # A page session's late *error* answer to an abandoned call raises the same way.
        with contextlib.suppress(asyncio.InvalidStateError):
            super()._on_query(msg)

    async def _on_close(self) -> None:
        _drop_abandoned(self._callbacks)
        for session in self._sessions.values():
            _drop_abandoned(session._callbacks)
        await super()._on_close()


async def connect(transport: PipeTransport) -> Browser:
    """A pyppeteer `Browser` talking over `transport`."""
    conn = PipeConnection(transport, asyncio.get_running_loop())

    async def on_close() -> None:
        return None

    browser: Browser = await Browser.create(
        conn, [], ignoreHTTPSErrors=True, defaultViewport=None, process=None, closeCallback=on_close
    )
    return browser


async def open_page(browser: Browser, user_agent: str) -> Page:
    """Create the session's page (newPage: `pages()` can wait forever on a fresh shell build)."""
    page: Page = await browser.newPage()
    await page.setViewport(VIEWPORT)
    if user_agent:
        await page.setUserAgent(user_agent)
    return page


async def ping(browser: Browser, timeout: float) -> None:
    """One DevTools round trip; `BrowserError` if it does not answer within `timeout`."""
    try:
        async with asyncio.timeout(timeout):
            await browser._connection.send("Browser.getVersion")
    except TimeoutError:
        raise BrowserError(f"DevTools did not answer within {timeout:g} s") from None
    except Exception as exc:
        raise BrowserError(f"DevTools connection failed: {exc}") from exc
