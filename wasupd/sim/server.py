"""The simulator's HTTP server: the page at `/`, its WebSocket at `/ws`, control at `/_sim/`.

The page (static/*.js) talks to this server over a real WebSocket, as WhatsApp Web talks to
WhatsApp's servers, so "server down", "silent stall" and round trips are real. Every duration
is multiplied by `time_factor` (see `timing`). § numbers refer to docs/whatsapp-web.md.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

from wasupd.sim.control import Control, UnknownAction
from wasupd.sim.core import Core
from wasupd.sim.linking import Linking
from wasupd.sim.messaging import Messaging
from wasupd.sim.model import World
from wasupd.sim.pages import PageConn
from wasupd.sim.timing import Timings, check_factor

VERSION = "2.3000.1017054665"  # §1a: window.Debug.VERSION, as wwebjs pins it
# Why 64 MiB: a Chromium tab showing a near-empty page measures ~150 MiB PSS here, and §8
# puts a real WhatsApp Web client at 300-400 MiB; real WhatsApp Web's JS heap at rest is
# roughly 60-120 MiB for a modest account. 64 MiB of live heap (which V8 keeps with some
# headroom) brings the tab close to the low end of §8 without making 20-session tests heavy.
DEFAULT_PAGE_WEIGHT_MIB = 64
SCRIPTS = (
    "core.js", "store.js", "ui.js", "link.js", "lid.js", "msg.js", "media.js", "modules.js",
    "growth.js", "boot.js",
)  # fmt: skip
MAX_WS_MESSAGE = 16 << 20
MAX_UPLOAD = 2 << 30  # the media host's bound; WhatsApp's own limits are checked by clients
CLOSE_TIMEOUT_S = 2.0  # a hung page must not hold up a close for long


class SimServer:
    """The simulated WhatsApp Web server: `await start()`, `.url`, `await stop()`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        time_factor: float = 1.0,
        page_weight_mib: int = DEFAULT_PAGE_WEIGHT_MIB,
        auto_read: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`ssl_context`: serve HTTPS (and the page's WebSocket as wss), e.g. to load the
        simulator as https://web.whatsapp.com/ in a browser told to resolve that name here."""
        check_factor(time_factor)
        self.host, self.port = host, port
        self.core = Core(Timings(time_factor), page_weight_mib=page_weight_mib, auto_read=auto_read)
        self.messaging = Messaging(self.core)
        self.linking = Linking(self.core, self.messaging)
        self.controls = Control(self.core, self.linking, self.messaging)
        self.url = ""
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None

    @property
    def world(self) -> World:
        """The accounts, devices, groups and messages (`model.World`)."""
        return self.core.world

    async def __aenter__(self) -> SimServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> SimServer:
        """Listen on `host:port` (0: any free port); sets `.url`."""
        app = web.Application(client_max_size=MAX_UPLOAD)
        app.router.add_get("/", self._index)
        app.router.add_post("/mms/{kind}", self._upload)
        app.router.add_get("/v/{path:.+}", self._download)
        app.router.add_get("/app.js", self._script)
        app.router.add_get("/favicon.ico", self._no_icon)
        app.router.add_get("/ws", self._ws)
        app.router.add_route("*", "/_sim/{action}", self._control)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        scheme = "https" if self.ssl_context else "http"
        self.url = f"{scheme}://{self.host}:{self.port}/"
        return self

    async def stop(self) -> None:
        """Close every page's socket, cancel timers and stop listening."""
        await self.core.drop(list(self.core.pages), 1001, "simulator stopping")
        await self.core.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- in-process conveniences (the same as the control API) -----------------------------

    async def control(self, action: str, params: dict[str, Any] | None = None) -> Any:
        """Run one control action in-process (see `control.Control`)."""
        return await self.controls.call(action, dict(params or {}))

    async def inject(self, to: str, from_: str, text: str) -> str:
        """A message from outside; its id."""
        return await self.messaging.inject(to, from_, text)

    async def remote_logout(self, phone: str) -> int:
        """Remote logout of every device of `phone`."""
        return await self.linking.remote_logout(phone)

    # -- HTTP ------------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.Response:
        html = resources.files("wasupd.sim").joinpath("static/index.html").read_text()
        return web.Response(text=html, content_type="text/html", headers=_NO_STORE)

    async def _no_icon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)  # spares the page a 404 in its console

    async def _script(self, request: web.Request) -> web.Response:
        """The page's bundle: the script files in one scope, with this server's settings."""
        static = resources.files("wasupd.sim").joinpath("static")
        body = "\n".join(static.joinpath(name).read_text() for name in SCRIPTS)
        config = {
            **self.core.t.page_config(),
            "version": VERSION,
            "pageWeightMiB": self.core.page_weight_mib,
        }
        js = f'(function (CFG) {{\n"use strict";\n{body}\n}})({json.dumps(config)});\n'
        return web.Response(text=js, content_type="application/javascript", headers=_NO_STORE)

    async def _upload(self, request: web.Request) -> web.Response:
        """The media host (§4g): the body is the file; answers its media entry."""
        if self.core.faults.server_down:
            raise web.HTTPServiceUnavailable(text="simulated WhatsApp server is down")
        blob = self.core.media.put(await request.read())
        return web.json_response(self.core.media.entry(blob))

    async def _download(self, request: web.Request) -> web.Response:
        """A download by direct path: the bytes, or 404 (an unknown or expired path)."""
        blob = self.core.media.by_path("/v/" + request.match_info["path"])
        if blob is None:
            raise web.HTTPNotFound(text="no such media (expired or never uploaded)")
        return web.Response(body=blob.data, content_type="application/octet-stream")

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self.core.faults.server_down:
            raise web.HTTPServiceUnavailable(text="simulated WhatsApp server is down")
        ws = web.WebSocketResponse(timeout=CLOSE_TIMEOUT_S, max_msg_size=MAX_WS_MESSAGE)
        await ws.prepare(request)
        conn = PageConn(ws)
        self.core.pages.add(conn)
        self.core.changed()
        try:
            async for frame in ws:
                if frame.type == WSMsgType.TEXT and not self.core.faults.stalled(conn):
                    await self._from_page(conn, frame.data)
        finally:
            conn.stop_rotation()
            self.core.pages.discard(conn)
            self.core.changed()
        return ws

    async def _from_page(self, conn: PageConn, text: str) -> None:
        try:
            msg = json.loads(text)
            kind = str(msg.get("t", ""))
        except (ValueError, AttributeError):
            return  # not from our page; the real server would drop it too
        handler = _PAGE_MESSAGES.get(kind)
        if kind in _TRAFFIC and not self.core.faults.live(conn):
            return  # CONFLICT, TIMEOUT, TOS_BLOCK...: nothing goes through
        if handler is not None:
            with contextlib.suppress(ValueError, TypeError, KeyError):  # a malformed message
                await handler(self, conn, msg)

    async def _control(self, request: web.Request) -> web.Response:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return _error(400, "the request body is not JSON")
            if not isinstance(body, dict):
                return _error(400, "the request body must be a JSON object of parameters")
            params.update(body)
        try:
            result = await self.control(request.match_info["action"], params)
        except UnknownAction as exc:
            return _error(404, str(exc))
        except ValueError as exc:
            return _error(400, str(exc))
        return web.json_response({"result": result})


_NO_STORE = {"Cache-Control": "no-store"}
_TRAFFIC = ("send", "exists", "seen", "receipt")  # what a page in a forced state cannot do


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _state(sim: SimServer, conn: PageConn, msg: dict[str, Any]) -> None:
    conn.state = str(msg.get("state", ""))
    sim.core.changed()


async def _refresh_qr(sim: SimServer, conn: PageConn, msg: dict[str, Any]) -> None:
    if conn.account is None:  # Cmd.refreshQR() on a linked page does nothing
        await sim.linking.issue_refs(conn)


async def _alt_mode(sim: SimServer, conn: PageConn, msg: dict[str, Any]) -> None:
    conn.stop_rotation()  # linking by phone number: no QR on screen


async def _qr_mode(sim: SimServer, conn: PageConn, msg: dict[str, Any]) -> None:
    conn.code = ""
    await sim.linking.issue_refs(conn)


async def _receipt(sim: SimServer, conn: PageConn, msg: dict[str, Any]) -> None:
    sim.messaging.receipt(conn, list(msg.get("ids") or []))


_PAGE_MESSAGES: dict[str, Any] = {
    "hello": lambda sim, conn, msg: sim.linking.hello(conn, msg),
    "state": _state,
    "alt_mode": _alt_mode,
    "refs": _refresh_qr,
    "qr_mode": _qr_mode,
    "pair_code": lambda sim, conn, msg: sim.linking.issue_code(conn, str(msg.get("phone", ""))),
    "logout": lambda sim, conn, msg: sim.linking.page_logout(conn),
    "takeover": lambda sim, conn, msg: sim.linking.takeover(conn),
    "exists": lambda sim, conn, msg: sim.messaging.exists(
        conn, msg.get("qid"), str(msg.get("wid"))
    ),
    "send": lambda sim, conn, msg: sim.messaging.send(conn, msg),
    "seen": lambda sim, conn, msg: sim.messaging.seen(conn, str(msg.get("chat", ""))),
    "receipt": _receipt,
}
