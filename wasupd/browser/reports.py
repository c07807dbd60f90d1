"""What the injected script's reports mean: page messages -> `DriverReport`s, with no browser.

`PageReports` holds the rules of one page: WhatsApp states become session states (`classify`),
QR refs become `qr` reports with their rotation and estimated expiry, refs running out renew
the QR up to `qr.max_rotations` times (the renewal itself is the driver's page work, handed in
as `renew_qr`), pairing codes become `code` reports and, while pairing, QR refs are not shown.
Messages are dispatched through `handlers`, an explicit table from the kind the page sends to
a method; an unknown kind is logged and ignored (never turned into a method name).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import structlog

from wasupd.browser import whatsapp as wa
from wasupd.config import Config
from wasupd.supervision.seams import DriverKind, DriverReport

log = structlog.get_logger("wasupd.driver")
REASONS = {  # what the session history says for each state the page reports
    "qr": "waiting for the QR to be scanned",
    "syncing": "linked; WhatsApp is loading chats",
    "connected": "WhatsApp Web is connected and synced",
}
Emit = Callable[[DriverReport], None]
Message = dict[str, Any]
# What an inbound message report carries (DriverKind "message").
MESSAGE_FIELDS = (
    "wa_id",
    "id",
    "chat_id",
    "sender",
    "sender_pn",
    "sender_lid",
    "push_name",
    "body",
    "type",
    "t",
)
# What a media message's report carries besides (its body is the caption).
MEDIA_FIELDS = (
    "mimetype",
    "size",
    "filename",
    "caption",
    "filehash",
)


def _hex_hash(filehash: Any) -> str | None:
    """WhatsApp's `filehash` (base64 SHA-256) in hex; None when it is not one."""
    try:
        raw = base64.b64decode(str(filehash or ""), validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == 32 else None


def classify(state: str, synced: bool) -> str:
    """What a WhatsApp state (`wa.STATES_*`) means for the session: a session state (`qr`,
    `syncing`, `connected`, `degraded`), `idle` (refs ran out), `failed`, or "" (no change)."""
    if state in wa.STATES_FATAL:
        return "failed"
    if state in wa.STATES_DEGRADED:
        return "degraded"
    if state == wa.STATE_CONNECTED:
        return "connected" if synced else "syncing"
    if state == wa.STATE_PAIRING:
        return "syncing"
    if state == wa.STATE_IDLE:
        return "idle"
    if state == wa.STATE_UNPAIRED:
        return "qr"
    return ""


class PageReports:
    """Translates one page's messages into reports (one instance per driver)."""

    def __init__(
        self,
        config: Config,
        emit: Emit,
        *,
        renew_qr: Callable[[], None],
        crash: Callable[[str], None],
        log: Any = log,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config, self._emit_report, self._renew_qr, self._crash = config, emit, renew_qr, crash
        self._log, self._time = log, clock
        self.mode = "waiting"  # "modules", or "dom" when only the DOM fallback works
        self.me: str | None = None
        self.rotation = 0  # refs shown in the current QR generation
        self.reloads = 0  # QR generations renewed after the refs ran out
        self.pairing = False  # linking by phone number: refs running out are not our concern
        self.was_connected = False
        self.last_ref: str | None = None
        self.handlers: dict[str, Callable[[Message], None]] = {
            "attached": self.on_attached,
            "error": self.on_error,
            "error_soft": self.on_error_soft,
            "logout": self.on_logout,
            "progress": self.on_progress,
            "state": self.on_state,
            "qr": self.on_qr,
            "dom": self.on_dom,
            "msg": self.on_msg,
            "ack": self.on_ack,
            "code": self.on_code,
            "code_exhausted": self.on_code_exhausted,
        }

    def handle(self, msg: Message) -> None:
        """Dispatch one page message by its kind `k`; an unknown kind is logged and ignored."""
        handler = self.handlers.get(str(msg.get("k")))
        if handler is None:
            self._log.warning("unknown_page_report", kind=str(msg.get("k"))[:40])
            return
        handler(msg)

    def emit(self, kind: DriverKind, value: str = "", data: dict[str, Any] | None = None) -> None:
        """Hand one report to the driver's consumer."""
        self._emit_report(DriverReport(kind=kind, value=value, data=data or {}))

    def new_document(self, url: str) -> None:
        """The main frame navigated: a new QR generation; a logout URL is a logout."""
        self.rotation, self.last_ref, self.mode, self.pairing = 0, None, "waiting", False
        if wa.LOGOUT_URL_MARKER in url:
            self.emit("logout", data={"reason": "logged out by the phone"})

    def code_report(self, code: str) -> dict[str, Any]:
        """A pairing code on offer (`code` report) with its expiry; returns the data."""
        data = {"code": code, "expires_at": self._time() + self.config.qr.pairing_code_refresh}
        self.emit("code", data=data)
        return data

    # -- handlers --------------------------------------------------------------------------

    def on_attached(self, msg: Message) -> None:
        self.mode = str(msg.get("mode"))
        self._log.info(
            "page_attached", mode=self.mode, version=msg.get("version"), why=msg.get("why")
        )
        self.emit("activity")

    def on_error(self, msg: Message) -> None:
        self._crash(str(msg.get("message")))

    def on_error_soft(self, msg: Message) -> None:
        self._log.warning("page_error", message=msg.get("message"))

    def on_logout(self, msg: Message) -> None:
        self.emit("logout", data={"reason": f"logged out by the phone ({msg.get('reason')})"})

    def on_progress(self, msg: Message) -> None:
        self.emit("activity", data={"progress": msg.get("percent")})

    def on_state(self, msg: Message) -> None:
        state, synced = str(msg.get("state")), bool(msg.get("synced"))
        if msg.get("me"):
            self.me = str(msg["me"])
        meaning = classify(state, synced)
        data: dict[str, Any] = {"wa_state": state}
        if meaning == "failed":
            help_ = wa.STATE_HELP.get(state, "")
            self.emit("failed", data={"reason": f"WhatsApp refused the session: {state}; {help_}"})
        elif meaning == "qr" and self.was_connected:
            # Linked in this page, then unpaired: the device was unlinked, whatever the URL.
            self.emit("logout", data={"reason": "logged out by the phone (unpaired)"})
        elif meaning == "idle":
            self.on_idle()
        elif meaning:
            self.set_state(meaning, state, data)
        else:
            self.emit("activity", data=data)

    def set_state(self, meaning: str, state: str, data: dict[str, Any]) -> None:
        if meaning == "connected":
            self.was_connected, self.reloads = True, 0
        if meaning in ("connected", "syncing") and self.me:
            data["me"] = self.me
        if meaning == "degraded":
            data["reason"] = f"WhatsApp is {state}: {wa.STATE_HELP.get(state, '')}"
        elif state == wa.STATE_PAIRING:
            data["reason"] = "a phone is linking this device"
        data.setdefault("reason", REASONS.get(meaning, ""))
        self.emit("state", meaning, data)

    def on_qr(self, msg: Message) -> None:
        ref, payload = msg.get("ref"), msg.get("payload")
        if not payload or ref == self.last_ref or self.pairing:
            return
        self.last_ref = str(ref)
        lifetime = wa.FIRST_REF_SECONDS if self.rotation == 0 else wa.NEXT_REF_SECONDS
        data = {
            "payload": payload,
            "rotation": self.rotation,
            "expires_at": self._time() + lifetime,
        }
        self.rotation += 1
        self.emit("qr", data=data)

    def on_idle(self) -> None:
        """Refs ran out: renew the QR `qr.max_rotations` times, then give up."""
        if self.pairing:
            self.emit("activity")
            return
        limit = self.config.qr.max_rotations
        if self.reloads >= limit:
            why = f"QR not scanned ({self.reloads + 1} QR generations expired; qr.max_rotations = {limit})"
            self.emit("failed", data={"reason": why})
            return
        self.reloads += 1
        self.rotation, self.last_ref = 0, None
        self._renew_qr()

    def on_dom(self, msg: Message) -> None:
        """The DOM fallback: the main screen, the reload button, or a QR payload."""
        if msg.get("main"):
            self.set_state(
                "connected", "main screen (DOM)", {"reason": "WhatsApp Web's main screen is shown"}
            )
        elif msg.get("idle"):
            self.on_idle()
        elif msg.get("ref"):
            self.on_qr({"ref": msg["ref"], "payload": msg["ref"]})
        else:
            self.emit("activity")

    def on_msg(self, msg: Message) -> None:
        m = msg.get("msg") or {}
        if m.get("from_me"):  # sent from the phone: not an inbound message
            self.emit("activity")
            return
        data = {k: m.get(k) for k in MESSAGE_FIELDS}
        if m.get("has_media"):
            data.update({k: m.get(k) for k in MEDIA_FIELDS})
            data["kind"] = wa.MEDIA_KINDS.get(str(m.get("type")), "document")
            data["sha256"] = _hex_hash(m.get("filehash"))
        self.emit("message", data={**data, "from_me": False})

    def on_ack(self, msg: Message) -> None:
        m = msg.get("msg") or {}
        if not m.get("from_me"):  # the phone read an inbound message: only a sign of life
            self.emit("activity")
            return
        keys = ("wa_id", "id", "chat_id", "chat_pn", "chat_lid")
        self.emit("ack", data={**{k: m.get(k) for k in keys}, "ack": msg.get("ack")})

    def on_code(self, msg: Message) -> None:
        self.code_report(str(msg.get("code")))

    def on_code_exhausted(self, msg: Message) -> None:
        n = msg.get("refreshes")
        self.emit("failed", data={"reason": f"pairing code not entered ({n} codes expired)"})
