"""The WhatsApp Web page driver: `PageDriver` and `MessagePort` over one pyppeteer page.

The injected script (inject.js) listens to the page's own modules and reports through a raw
DevTools binding (`Runtime.addBinding`), so nothing polls where WhatsApp has an event; it is
added with `Page.addScriptToEvaluateOnNewDocument`, so every navigation (a logout, a reload)
gets it again. This module turns those reports into session states and `DriverReport`s, clicks
the QR reload button when refs run out (up to `qr.max_rotations` times), and sends, checks
numbers, pairs by code and probes liveness by calling the page functions the script installs
(`window.__wasupd`). Every WhatsApp name comes from `whatsapp.py`.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Coroutine
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import structlog

from wasupd.addressing import Peer, is_group, is_lid, parse_recipient
from wasupd.browser import transfer
from wasupd.browser import whatsapp as wa
from wasupd.browser.reports import PageReports, classify
from wasupd.config import Config
from wasupd.devtools import cdp
from wasupd.errors import BrowserError, NotOnWhatsApp
from wasupd.supervision.seams import (
    BrowserHandle,
    DriverReport,
    InboundMedia,
    OutboundMedia,
    Report,
    SessionOptions,
)

__all__ = [
    "SELF_PING_TEXT",
    "WhatsAppDriver",
    "bounded",
    "classify",
    "script_source",
]
log = structlog.get_logger("wasupd.driver")
T = TypeVar("T")
EVAL_TIMEOUT = 30.0  # one page call; sends wait for the server's ack within this
RELOAD_QR_WAIT = 5.0  # for the reload button to appear once the refs ran out
ID_BATCH = 32  # message ids fetched per page call (they are random: prefetching is safe)
SELF_PING_TEXT = "wasupd liveness check"
_GONE = ("Target closed", "Session closed", "Connection closed")  # the page is gone for good


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # an abandoned call's late failure is expected, not news


async def bounded(call: Awaitable[T], timeout: float) -> T:
    """Await a DevTools call for at most `timeout` seconds (`TimeoutError` after) without
    cancelling it: a reply arriving for a cancelled call is what breaks pyppeteer 2.0's receive
    loop (`cdp.PipeConnection` guards against it too). An abandoned call ends when the page
    answers, navigates or goes away."""
    task = asyncio.ensure_future(call)
    task.add_done_callback(_retrieve)
    async with asyncio.timeout(timeout):
        return await asyncio.shield(task)


def script_source() -> str:
    """inject.js with its configuration filled in."""
    script = resources.files("wasupd.browser").joinpath("inject.js").read_text()
    return script.replace("__CONFIG__", wa.inject_config()).replace("__SURFACE__", wa.surface_js())


class WhatsAppDriver:
    """Drives WhatsApp Web in one session's page (one instance per browser life)."""

    def __init__(self, session: str, *, config: Config, options: SessionOptions) -> None:
        """`options` are accepted like every session seam's factory gets them; none applies to
        the page (proxy and user agent are launch arguments)."""
        self.session, self.config, self.options = session, config, options
        self.page: Any = None
        self._report: Report | None = None
        self._log = log.bind(session=session)
        self.reports = PageReports(
            config, self._forward, renew_qr=self._renew_qr, crash=self._crash, log=self._log
        )
        self._gone = False
        self._peers: dict[str, Peer] = {}  # resolved recipients, for this document
        self._ids: list[str] = []
        self._last_self_ping = -math.inf
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def mode(self) -> str:
        """How the page is driven: "waiting", "modules", or "dom" (the DOM fallback)."""
        return self.reports.mode

    @property
    def me(self) -> str | None:
        """The account's own chat id, once the page reported it."""
        return self.reports.me

    # -- PageDriver ------------------------------------------------------------------------

    async def attach(self, handle: BrowserHandle, report: Report) -> None:
        """Install the binding and the script, then load `browser.url`."""
        await self.install(handle.page, report)
        timeout = self.config.browser.start_timeout
        goto = self.page.goto(
            self.config.browser.url, waitUntil="load", timeout=int(timeout * 1000)
        )
        await bounded(goto, timeout + 1)

    async def install(self, page: Any, report: Report) -> None:
        """Listen on `page` and have inject.js run in each of its new documents."""
        self.page, self._report = page, report
        client = page._client
        # pyppeteer's own bindingCalled handler assumes its exposeFunction wire format; route
        # our binding here and hand any other binding back to it.
        client.remove_all_listeners("Runtime.bindingCalled")
        client.on("Runtime.bindingCalled", self._on_binding)
        await bounded(client.send("Runtime.addBinding", {"name": wa.BINDING}), EVAL_TIMEOUT)
        source = {"source": script_source()}
        await bounded(client.send("Page.addScriptToEvaluateOnNewDocument", source), EVAL_TIMEOUT)
        page.on("framenavigated", self._on_navigated)
        page.on("error", lambda err: self._crash(f"page crashed: {err}"))
        page.on("close", lambda: self._crash("page closed (Target closed)"))

    async def inject_current_document(self) -> None:
        """Run inject.js in the document already loaded (one loaded before `install`)."""
        await bounded(self.page.evaluate(script_source(), force_expr=True), EVAL_TIMEOUT)

    async def detach(self) -> None:
        """Stop reporting; background page work of this driver is cancelled."""
        self._report = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def reload(self) -> None:
        """Reload the page (a liveness recovery step); the script comes back with it."""
        reload = self.page.reload(waitUntil="domcontentloaded", timeout=int(EVAL_TIMEOUT * 1000))
        await bounded(reload, EVAL_TIMEOUT + 1)

    async def probe(self, timeout: float) -> None:
        """The page evaluates, WhatsApp says it is connected, and its server answers an
        existence query for the account's own number (a round trip that leaves no trace on the
        phone), all within `timeout`; with `health.self_ping`, also a message to itself at most
        once per `probe_interval`. `BrowserError` naming the failed step otherwise. In the DOM
        fallback only the main screen can be checked."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        def left() -> float:
            return max(0.001, deadline - loop.time())

        r = await self._call("probe", wa.STATE_CONNECTED, timeout=left(), step="page evaluation")
        if not r.get("ok"):
            raise BrowserError(str(r.get("why")))
        if r.get("dom"):  # the DOM fallback has no server round trip to offer
            return
        me = str(r["me"])
        step = "the server's answer to an existence query for the own number"
        if not await self._call("exists", me, timeout=left(), step=step):
            raise BrowserError(f"WhatsApp's server says the own number {me} does not exist")
        if self.config.health.self_ping and self._self_ping_due():
            self._last_self_ping = time.monotonic()
            mid = await self.new_message_id()
            await self._send(me, SELF_PING_TEXT, mid, timeout=left(), step="a message to itself")

    def _self_ping_due(self) -> bool:
        return time.monotonic() - self._last_self_ping >= self.config.health.probe_interval

    # -- linking and logout ----------------------------------------------------------------

    async def request_pairing_code(self, phone: str, notify: bool = True) -> dict[str, Any]:
        """Link by phone number instead of QR (docs/driver.md "Linking"): the 8-character code to type on
        the phone and its expiry; the page renews it every `qr.pairing_code_refresh` seconds."""
        refresh = self.config.qr.pairing_code_refresh
        self.reports.pairing = True
        try:
            code = await self._call(
                "pair",
                phone,
                notify,
                int(refresh * 1000),
                wa.PAIRING_CODE_MAX_REFRESHES,
                step="requesting a pairing code",
            )
        except BrowserError:
            self.reports.pairing = False
            raise
        code = str(code)
        if len(code) != wa.PAIRING_CODE_LENGTH or not set(code) <= set(wa.PAIRING_CODE_ALPHABET):
            raise BrowserError(f"WhatsApp returned an unexpected pairing code {code!r}")
        return self.reports.code_report(code)

    async def logout(self) -> None:
        """Unlink this device: the page tells WhatsApp's server (a requested logout)."""
        await self._call("logout", timeout=10.0, step="logout")

    # -- MessagePort -----------------------------------------------------------------------

    async def resolve_chat(self, to: str) -> str:
        """The chat id for `to` (a number, `@c.us`, `@lid` or `@g.us`), checked with WhatsApp
        (`NotOnWhatsApp` when it does not exist). A user is resolved as whatsapp-web.js's
        `enforceLidAndPnRetrieval` does (docs/driver.md "Addressing"); what the page knows of
        the person is kept for `peer`."""
        chat_id = parse_recipient(to)
        if chat_id in self._peers:
            return chat_id
        if is_group(chat_id):
            if not await self._call("hasChat", chat_id, step="group lookup"):
                raise NotOnWhatsApp(
                    f"this account is not a member of the group {chat_id}", chat_id=chat_id
                )
            self._peers[chat_id] = Peer()
            return chat_id
        found = await self._call("resolve", chat_id, step="existence query")
        if not found.get("found"):
            if found.get("state") not in (None, wa.STATE_CONNECTED):
                # A page that is logging out or reconnecting answers from no server: not a
                # verdict on the number (a retryable error, not a failed message).
                raise BrowserError(
                    f"the page was {found['state']} while looking {to} up; trying again"
                )
            raise NotOnWhatsApp(_not_on_whatsapp(chat_id), chat_id=chat_id)
        self._peers[chat_id] = Peer.of(chat_id, pn=found.get("pn"), lid=found.get("lid"))
        return chat_id

    def peer(self, chat_id: str) -> Peer:
        """What `resolve_chat` learnt of the person behind `chat_id` (empty for a group)."""
        return self._peers.get(chat_id) or Peer.of(chat_id)

    async def new_message_id(self) -> str:
        """A fresh message id from the page (fetched in batches; ids are random)."""
        if not self._ids:
            self._ids = [str(i) for i in await self._call("newIds", ID_BATCH, step="message ids")]
        return self._ids.pop()

    async def send_text(self, chat_id: str, body: str, *, message_id: str) -> str:
        """Send `body` with id `message_id` (docs/driver.md "Sending"); the serialized key once WhatsApp's
        server took it (`BrowserError` for any other result)."""
        return await self._send(chat_id, body, message_id, timeout=EVAL_TIMEOUT, step="sending")

    async def send_media(self, chat_id: str, media: OutboundMedia, *, message_id: str) -> str:
        """Hand `media`'s bytes to the page in chunks, then have it prepare, upload and send
        them as WhatsApp Web does (docs/driver.md "Media"); the serialized key once the
        server took it."""
        return await transfer.send_media(self, chat_id, media, message_id)

    async def download_media(self, wa_id: str, dest: Path) -> InboundMedia | None:
        """Have the page download a received file, then read it out in chunks into `dest`."""
        return await transfer.download_media(self, wa_id, dest)

    async def _send(self, chat_id: str, body: str, mid: str, *, timeout: float, step: str) -> str:
        alt = self.peer(chat_id).alternate(chat_id)
        result = await self._call("send", chat_id, body, mid, alt, timeout=timeout, step=step)
        return self.sent_key(result)

    def sent_key(self, result: dict[str, Any]) -> str:
        """The serialized key of a page send's `result`; `BrowserError` unless it was sent."""
        if result.get("error"):
            raise BrowserError(f"send failed: {result['error']}")
        if result.get("result") != wa.SEND_OK:
            raise BrowserError(f"send failed: WhatsApp answered {result.get('result')}")
        return str(result["key"])

    async def message_exists(self, chat_id: str, message_id: str) -> bool:
        """True when the page knows a message this device sent to `chat_id` with that id; the
        page may have filed it under the person's other id (the LID chat of a number)."""
        chats = [chat_id, *filter(None, [self.peer(chat_id).alternate(chat_id)])]
        keys = [wa.message_key(c, message_id) for c in chats]
        return bool(await self._call("msgExists", keys))

    async def set_typing(self, chat_id: str, typing: bool) -> None:
        """Presence is cosmetic and no studied client names a module for it: nothing is shown."""
        return None

    # -- page calls ------------------------------------------------------------------------

    async def call(self, fn: str, *args: Any, timeout: float = EVAL_TIMEOUT, step: str = "") -> Any:
        """A page function of inject.js, bounded (`BrowserError` on any failure)."""
        return await self._call(fn, *args, timeout=timeout, step=step)

    async def _call(
        self, fn: str, *args: Any, timeout: float = EVAL_TIMEOUT, step: str = ""
    ) -> Any:
        """`window.__wasupd.<fn>(*args)` in the page, bounded; `BrowserError` on any failure."""
        if self.page is None:
            raise BrowserError("no page attached")
        what = step or fn
        js = (
            "(...a) => { const w = window.__wasupd;"
            " if (!w) throw new Error('the page has not loaded the driver script yet');"
            f" return w.{fn}(...a); }}"
        )
        try:
            return await bounded(cdp.evaluate(self.page, js, *args), timeout)
        except TimeoutError:
            raise BrowserError(f"no answer within {timeout:.3g} s ({what})") from None
        except Exception as exc:
            if any(m in str(exc) for m in _GONE):
                self._crash(f"page went away during {what} ({exc})")
            first = (str(exc).splitlines() or [type(exc).__name__])[0]  # not the JS stack
            raise BrowserError(f"{what} failed in the page: {first}") from exc

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Page work started from an event handler; owned here, cancelled by `detach`."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- reports from the page -------------------------------------------------------------

    def _forward(self, report: DriverReport) -> None:
        if self._report is not None:
            self._report(report)

    def _crash(self, reason: str) -> None:
        if not self._gone:
            self._gone = True
            self.reports.emit("crash", data={"reason": reason})

    def _on_binding(self, event: dict[str, Any]) -> None:
        if event.get("name") != wa.BINDING:
            self.page._onBindingCalled(event)
            return
        try:
            self.reports.handle(json.loads(event.get("payload") or ""))
        except Exception:  # a bad report must never break pyppeteer's receive loop
            self._log.exception("page_report_failed", payload=str(event.get("payload"))[:200])

    def _on_navigated(self, frame: Any) -> None:
        if frame.parentFrame is not None:
            return
        # A new document: a new QR generation, its own chats and ids.
        self._peers.clear()
        self._ids.clear()
        self.reports.new_document(frame.url or "")

    def _renew_qr(self) -> None:
        self._spawn(self._reload_qr())

    async def _reload_qr(self) -> None:
        try:
            how = await self._call(
                "reloadQr", int(RELOAD_QR_WAIT * 1000), timeout=RELOAD_QR_WAIT + 5
            )
        except BrowserError as exc:
            how, error = None, exc.message
        else:
            error = ""
        self._log.info("qr_reloaded", how=how, reloads=self.reports.reloads, error=error)
        if how is None and self._report is not None:  # no button, no command: a fresh page
            await self.reload()


def _not_on_whatsapp(chat_id: str) -> str:
    if is_lid(chat_id):
        return f"{chat_id} is not on WhatsApp (WhatsApp does not know this LID); check the id"
    number = chat_id.split("@", maxsplit=1)[0]
    return f"+{number} is not on WhatsApp; check the number and its country code"
