"""pyppeteer's Browser and Page over a `PipeTransport` instead of a websocket.

`PipeConnection` also spends fewer turns of the event loop per message than pyppeteer's
`Connection`, which every session's calls, answers and page events go through: pyppeteer
yields twice (`asyncio.sleep(0)`) for each message it receives and starts a task for each one
it sends; here the pipe hands each received message over in the read callback that completes
it (no queue, no task wake-up), and a sent one is written to the pipe's buffer at once (in
order, as the calls are made).

It also makes pyppeteer survive callers that give up: pyppeteer 2.0 answers a
late response by `set_result` on the caller's future, and if the caller was cancelled (an
`asyncio.timeout` around a ping or an evaluate) that raises `InvalidStateError` inside the
receive loop, which ends the loop and leaves every later call hanging. Late answers to calls
nobody awaits any more are dropped here instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Awaitable
from typing import Any

from pyppeteer import helper
from pyppeteer.browser import Browser
from pyppeteer.connection import Connection
from pyppeteer.errors import ElementHandleError, NetworkError, PageError
from pyppeteer.page import Page
from websockets.exceptions import ConnectionClosed

from wasupd.devtools.pipe import PipeTransport
from wasupd.errors import BrowserError

log = logging.getLogger("pyppeteer.connection")
# pyppeteer's evaluate returns None for a result JSON cannot carry (a DOM node, a cycle).
_NOT_BY_VALUE = ("Object reference chain is too long", "Object couldn't be returned by value")
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

    async def _recv_loop(self) -> None:
        """pyppeteer's receive loop, except that the pipe hands each message to `_dispatch` as
        it is read; this loop waits for the close."""
        async with self._ws as connection:
            self._connected = True
            self.connection = connection
            self._ws.deliver_to(self._dispatch)
            while self._connected:
                try:
                    message = await self._ws.recv()
                except (ConnectionClosed, ConnectionResetError):
                    log.info("connection closed")
                    break
                if message:
                    self._dispatch(message)
        if self._connected:
            self._loop.create_task(self.dispose())

    def _dispatch(self, message: str) -> None:
        """`_handle` one message; one that fails is logged and the next ones still handled."""
        try:
            self._handle(message)
        except Exception:
            log.exception("DevTools message not handled: %.200s", message)

    def _handle(self, message: str) -> None:
        """What pyppeteer's `_on_message` does, without its `asyncio.sleep`."""
        msg = json.loads(message)
        if msg.get("id") in self._callbacks:
            self._on_response(msg)
        else:
            self._on_query(msg)

    def send(self, method: str, params: dict[str, Any] | None = None) -> Awaitable[Any]:
        """pyppeteer's `send`, the message written at once instead of by a task of its own
        (the task is kept for a pipe that is not writable: it reports the closed pipe)."""
        if self._lastId and not self._connected:
            raise ConnectionError("Connection is closed")
        self._lastId += 1
        msg_id = self._lastId
        msg = json.dumps({"id": msg_id, "method": method, "params": params or {}})
        callback: asyncio.Future[Any] = self._loop.create_future()
        self._callbacks[msg_id] = callback
        # What pyppeteer's error paths read from a pending call.
        callback.error = NetworkError()  # type: ignore[attr-defined]
        callback.method = method  # type: ignore[attr-defined]
        if not self._ws.write_now(msg):
            self._loop.create_task(self._async_send(msg, msg_id))
        return callback

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


# Domains pyppeteer enables on every page that nothing here reads: each sends its events over
# the pipe all the same (a Network event per WebSocket frame WhatsApp Web sends or receives, a
# request's four or more, console entries, security and performance state), and every one is
# parsed twice (pyppeteer's session messages are JSON inside JSON) and dispatched.
UNUSED_DOMAINS = ("Network", "Log", "Performance", "Security")


async def open_page(browser: Browser, user_agent: str) -> Page:
    """Create the session's page (newPage: `pages()` can wait forever on a fresh shell build),
    with the domains no caller listens to (`UNUSED_DOMAINS`) disabled again. Commands of a
    disabled domain still work (`Network.setUserAgentOverride`, `Network.clearBrowserCache`)."""
    page: Page = await browser.newPage()
    await page.setViewport(VIEWPORT)
    if user_agent:
        await page.setUserAgent(user_agent)
    await asyncio.gather(*(page._client.send(f"{d}.disable") for d in UNUSED_DOMAINS))
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


def _argument(value: Any) -> dict[str, Any]:
    """One call argument as pyppeteer passes a plain value (infinities are not JSON)."""
    if isinstance(value, float) and math.isinf(value):
        return {"unserializableValue": "Infinity" if value > 0 else "-Infinity"}
    return {"value": value}


async def evaluate(page: Page, function: str, *args: Any) -> Any:
    """`page.evaluate(function, *args)` in one DevTools round trip.

    pyppeteer's evaluate makes up to three: the call returns a handle, a second call turns it
    into JSON and a third releases it. Here the call returns its result by value, with the
    same result, the same errors (`ElementHandleError` for a JS exception, `NetworkError`
    when the context went away) and None where pyppeteer gives None."""
    frame = page.mainFrame
    if frame is None:
        raise PageError("no main frame.")
    context = await frame.executionContext()
    if context is None:
        raise ElementHandleError("ExecutionContext is None.")
    try:
        answer = await context._client.send(
            "Runtime.callFunctionOn",
            {
                "functionDeclaration": f"{function}\n//# sourceURL=__pyppeteer_evaluation_script__\n",
                "executionContextId": context._contextId,
                "arguments": [_argument(a) for a in args],
                "returnByValue": True,
                "awaitPromise": True,
                "userGesture": True,
            },
        )
    except NetworkError as exc:
        text = str(exc.args[0]) if exc.args else ""
        if any(m in text for m in _NOT_BY_VALUE):
            return None
        if text.endswith("Cannot find context with specified id"):
            raise NetworkError(
                "Execution context was destroyed, most likely because of a navigation."
            ) from None
        raise
    if details := answer.get("exceptionDetails"):
        raise ElementHandleError(f"Evaluation failed: {helper.getExceptionMessage(details)}")
    return helper.valueFromRemoteObject(answer.get("result") or {})
