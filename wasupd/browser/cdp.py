"""pyppeteer's Browser and Page over a `PipeTransport` instead of a websocket."""

from __future__ import annotations

import asyncio
from typing import Any

from pyppeteer.browser import Browser
from pyppeteer.connection import Connection
from pyppeteer.page import Page

from wasupd.browser.pipe import PipeTransport
from wasupd.errors import BrowserError

# A common laptop size: WhatsApp Web lays itself out for desktop screens.
VIEWPORT = {"width": 1280, "height": 860}


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
