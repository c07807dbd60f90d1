"""The WhatsApp Web page driver: `PageDriver` and `MessagePort` over one pyppeteer page.

The injected script (inject.js) listens to the page's own modules and reports through a
DevTools binding, so there is no polling where WhatsApp has an event. This module maps those
reports to session states and reports for the runner, clicks the QR reload button when refs run
out (up to `qr.max_rotations` times), and implements sending, existence checks and the
liveness probe by calling the page's modules. WhatsApp names come from `whatsapp.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from importlib import resources
from typing import Any

import structlog

from wasupd.browser import whatsapp as wa
from wasupd.config import Config
from wasupd.errors import BrowserError, InvalidArgument, NotOnWhatsApp
from wasupd.supervision.runner import SessionOptions
from wasupd.supervision.seams import BrowserHandle, DriverReport, Report

log = structlog.get_logger("wasupd.driver")
EVAL_TIMEOUT = 30.0
_MODS = json.dumps(wa.MODULES)


def _js(body: str) -> str:
    """An async page function with `M(key)` bound to the configured module names."""
    return f"async (...args) => {{ const MODS = {_MODS}; const M = (k) => window.require(MODS[k]); {body} }}"


JS_NEW_ID = _js("return String(await M('msgKey').newId());")
JS_EXISTS = _js(
    "const r = await M('queryExists').queryWidExists(M('widFactory').createWid(args[0]));"
    " return r && r.wid ? String(r.wid._serialized || r.wid) : null;"
)
JS_HAS_CHAT = _js("return !!M('collections').Chat.get(args[0]);")
JS_SEND = _js(
    """
    const [chatId, body, id] = args;
    const wid = M('widFactory').createWid(chatId);
    const found = await M('findChat').findOrCreateLatestChat(wid);
    const chat = found && found.chat;
    if (!chat) return { error: 'no such chat' };
    const from = M('meUser').getMaybeMePnUser();
    const MsgKey = M('msgKey');
    const key = new MsgKey({ from, to: chat.id, id, participant: undefined, selfDir: 'out' });
    const msg = { id: key, ack: 0, body, from, to: chat.id, local: true, self: 'out',
      t: Math.floor(Date.now() / 1000), isNewMsg: true, type: 'chat',
      ...M('ephemeral').getEphemeralFields(chat) };
    const [msgPromise, resultPromise] = M('sendMsg').addAndSendMsgToChat(chat, msg);
    await msgPromise;
    const result = await resultPromise;
    const code = typeof result === 'string' ? result : (result && (result.messageSendResult || result.status)) || String(result);
    return { key: key._serialized, result: code };
    """
)
JS_MSG_EXISTS = _js("return !!M('collections').Msg.get(args[0]);")
JS_PROBE = _js(
    """
    const Socket = M('socket').Socket;
    if (Socket.state !== 'CONNECTED') return { ok: false, why: 'Socket.state is ' + Socket.state };
    const me = M('meUser').getMaybeMePnUser();
    if (!me) return { ok: false, why: 'own account unknown' };
    const r = await M('queryExists').queryWidExists(me);
    return r ? { ok: true } : { ok: false, why: 'existence query for the own number failed' };
    """
)
JS_PAIR = _js(
    """
    const api = M('altLinking');
    api.setPairingType('ALT_DEVICE_LINKING');
    await api.initializeAltDeviceLinking();
    return String(await api.startAltLinkingFlow(args[0], args[1]));
    """
)
JS_LOGOUT = _js("M('socket').Socket.logout(); return true;")
JS_RELOAD_QR = _js(
    f"""
    const btn = document.querySelector({json.dumps(wa.SELECTOR_QR_RELOAD)});
    if (btn) {{ btn.click(); return 'button'; }}
    const cmd = M('cmd').Cmd;
    if (typeof cmd.refreshQR === 'function') {{ cmd.refreshQR(); return 'refreshQR'; }}
    return null;
    """
)


def chat_id_for(to: str) -> str:
    """A chat id from a phone number (`+`, spaces, dashes accepted) or a chat id."""
    to = to.strip()
    if "@" in to:
        user, _, server = to.partition("@")
        if server not in (wa.USER_SERVER, wa.GROUP_SERVER) or not user:
            raise InvalidArgument(f"unsupported chat id {to!r}: use <digits>@c.us or <id>@g.us")
        return to
    digits = re.sub(r"[\s\-().+]", "", to)
    if not digits.isdigit() or not 7 <= len(digits) <= 15:
        raise InvalidArgument(
            f"invalid recipient {to!r}: give a phone number with country code (e.g. +49 151 2345678)"
            " or a chat id (...@c.us, ...@g.us)"
        )
    return f"{digits}@{wa.USER_SERVER}"


class WhatsAppDriver:
    """Drives WhatsApp Web in one session's page."""

    def __init__(self, session: str, *, config: Config, options: SessionOptions) -> None:
        self.session = session
        self.config = config
        self.options = options
        self.page: Any = None
        self._report: Report | None = None
        self._log = log.bind(session=session)
        self.rotation = 0
        self.reloads = 0
        self.me: str | None = None
        self.synced = False
        self._last_ref: str | None = None
        self._reload_task: asyncio.Task[None] | None = None

    # -- PageDriver ------------------------------------------------------------------------

    async def attach(self, handle: BrowserHandle, report: Report) -> None:
        self.page = handle.page
        self._report = report
        client = self.page._client
        # exposeFunction is pyppeteer's DevTools binding (Runtime.addBinding + a page wrapper);
        # a raw binding beside it would trip pyppeteer's own bindingCalled handler.
        await self.page.exposeFunction(wa.BINDING, self._on_payload)
        script = resources.files("wasupd.browser").joinpath("inject.js").read_text()
        source = script.replace("__CONFIG__", wa.inject_config())
        # Raw CDP: pyppeteer's evaluateOnNewDocument would wrap the script as a function call.
        await client.send("Page.addScriptToEvaluateOnNewDocument", {"source": source})
        self.page.on("framenavigated", self._on_navigated)
        self.page.on(
            "error", lambda err: self._emit("crash", data={"reason": f"page crashed: {err}"})
        )
        self.page.on(
            "close", lambda: self._emit("crash", data={"reason": "page closed (Target closed)"})
        )
        await self.page.goto(
            self.config.browser.url,
            waitUntil="load",
            timeout=int(self.config.browser.start_timeout * 1000),
        )

    async def detach(self) -> None:
        self._report = None
        if self._reload_task is not None:
            self._reload_task.cancel()

    async def reload(self) -> None:
        self.rotation = 0
        await self.page.reload(waitUntil="domcontentloaded", timeout=int(EVAL_TIMEOUT * 1000))

    async def probe(self, timeout: float) -> None:
        result = await self._eval(JS_PROBE, timeout=timeout)
        if not result.get("ok"):
            raise BrowserError(str(result.get("why", "probe failed")))

    # -- reports from the page -------------------------------------------------------------

    def _emit(self, kind: str, value: str = "", data: dict[str, Any] | None = None) -> None:
        if self._report is not None:
            self._report(DriverReport(kind=kind, value=value, data=data or {}))  # type: ignore[arg-type]

    def _on_payload(self, payload: str) -> None:
        try:
            msg = json.loads(payload)
        except (TypeError, json.JSONDecodeError):
            return
        handler = getattr(self, f"_on_{msg.get('k')}", None)
        if handler is not None:
            handler(msg)
        else:
            self._emit("activity")

    def _on_navigated(self, frame: Any) -> None:
        if frame.parentFrame is None and wa.LOGOUT_URL_MARKER in (frame.url or ""):
            self._emit("logout", data={"reason": "logged out by the phone"})

    def _on_attached(self, msg: dict[str, Any]) -> None:
        self._log.info("page_attached", version=msg.get("version"))
        self._emit("activity")

    def _on_error(self, msg: dict[str, Any]) -> None:
        self._emit("crash", data={"reason": str(msg.get("message"))})

    def _on_logout(self, msg: dict[str, Any]) -> None:
        self._emit("logout", data={"reason": "logged out by the phone"})

    def _on_progress(self, msg: dict[str, Any]) -> None:
        self._emit("activity", data={"progress": msg.get("percent")})

    def _on_state(self, msg: dict[str, Any]) -> None:
        state, synced = str(msg.get("state")), bool(msg.get("synced"))
        if msg.get("me"):
            self.me = str(msg["me"])
        data: dict[str, Any] = {"wa_state": state}
        if self.me:
            data["me"] = self.me
        if state in wa.STATES_FATAL:
            self._emit("failed", data={"reason": f"WhatsApp refused the session: {state}"})
        elif state in wa.STATES_DEGRADED:
            self._emit("state", "degraded", {**data, "reason": f"WhatsApp state {state}"})
        elif state == wa.STATE_CONNECTED:
            self.synced = synced
            self.reloads = 0
            self._emit("state", "connected" if synced else "syncing", data)
        elif state == wa.STATE_IDLE:
            self._on_idle()
        elif state in wa.STATES_QR:
            self._emit("state", "qr", data)
        elif state == "PAIRING":
            self._emit("state", "syncing", {**data, "reason": "pairing"})
        else:
            self._emit("activity", data=data)

    def _on_qr(self, msg: dict[str, Any]) -> None:
        ref, payload = msg.get("ref"), msg.get("payload")
        if not payload or ref == self._last_ref:
            return
        self._last_ref = str(ref)
        lifetime = wa.FIRST_REF_SECONDS if self.rotation == 0 else wa.NEXT_REF_SECONDS
        self._emit(
            "qr",
            data={
                "payload": payload,
                "rotation": self.rotation,
                "expires_at": time.time() + lifetime,
            },
        )
        self._emit("state", "qr")
        self.rotation += 1

    def _on_idle(self) -> None:
        """Refs ran out: reload the QR a configured number of times, then give up."""
        if self.reloads >= self.config.qr.max_rotations:
            self._emit(
                "failed",
                data={"reason": f"QR not scanned ({self.reloads + 1} QR generations expired)"},
            )
            return
        self.reloads += 1
        self.rotation = 0
        self._reload_task = asyncio.ensure_future(self._click_reload())

    async def _click_reload(self) -> None:
        with contextlib.suppress(Exception):
            how = await self._eval(JS_RELOAD_QR)
            self._log.info("qr_reloaded", how=how, reloads=self.reloads)

    def _on_msg(self, msg: dict[str, Any]) -> None:
        m = msg.get("msg") or {}
        if m.get("from_me"):
            self._emit("activity")
            return
        self._emit("message", data=m)

    def _on_ack(self, msg: dict[str, Any]) -> None:
        m = msg.get("msg") or {}
        self._emit(
            "ack",
            data={
                "wa_id": m.get("wa_id"),
                "id": m.get("id"),
                "chat_id": m.get("chat_id"),
                "ack": msg.get("ack"),
            },
        )

    # -- calls into the page ---------------------------------------------------------------

    async def _eval(self, fn: str, *args: Any, timeout: float = EVAL_TIMEOUT) -> Any:
        if self.page is None:
            raise BrowserError("no page attached")
        try:
            async with asyncio.timeout(timeout):
                return await self.page.evaluate(fn, *args)
        except TimeoutError:
            raise BrowserError(f"the page did not answer within {timeout:g} s") from None
        except BrowserError:
            raise
        except Exception as exc:
            raise BrowserError(f"page call failed: {exc}") from exc

    async def request_pairing_code(self, phone: str, notify: bool = True) -> dict[str, Any]:
        """Switch to pairing by phone number; the 8-character code to type on the phone."""
        code = str(await self._eval(JS_PAIR, phone, notify))
        data = {"code": code, "expires_at": time.time() + self.config.qr.pairing_code_refresh}
        self._emit("code", data=data)
        return data

    async def logout(self) -> None:
        """Unlink this device (the page tells the server)."""
        with contextlib.suppress(BrowserError):
            await self._eval(JS_LOGOUT, timeout=10)

    # -- MessagePort -----------------------------------------------------------------------

    async def resolve_chat(self, to: str) -> str:
        chat_id = chat_id_for(to)
        if chat_id.endswith("@" + wa.GROUP_SERVER):
            if not await self._eval(JS_HAS_CHAT, chat_id):
                raise NotOnWhatsApp(f"this account is not in the group {chat_id}", chat_id=chat_id)
            return chat_id
        found = await self._eval(JS_EXISTS, chat_id)
        if not found:
            raise NotOnWhatsApp(f"{chat_id.split('@')[0]} is not on WhatsApp", chat_id=chat_id)
        return str(found)

    async def new_message_id(self) -> str:
        return str(await self._eval(JS_NEW_ID))

    async def send_text(self, chat_id: str, body: str, *, message_id: str) -> str:
        result = await self._eval(JS_SEND, chat_id, body, message_id)
        if result.get("error"):
            raise BrowserError(f"send failed: {result['error']}")
        if result.get("result") != wa.SEND_OK:
            raise BrowserError(f"send failed: WhatsApp answered {result.get('result')}")
        return str(result["key"])

    async def message_exists(self, chat_id: str, message_id: str) -> bool:
        return bool(await self._eval(JS_MSG_EXISTS, f"true_{chat_id}_{message_id}"))

    async def set_typing(self, chat_id: str, typing: bool) -> None:
        # Presence is cosmetic; a page without the module must not fail a send.
        return None
