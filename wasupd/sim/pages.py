"""One connected page: its WebSocket, what it is linked to, its QR refs and pairing code."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from wasupd.sim.model import Account, Device
from wasupd.sim.qr import Payload

REF_GRACE_S = 0.5  # a phone that read the ref just before it rotated still links (real seconds)
_ids = itertools.count(1)


@dataclass(eq=False)
class PageConn:
    """A page's WebSocket and the server's view of that page."""

    ws: web.WebSocketResponse
    page_id: int = field(default_factory=lambda: next(_ids))
    account: Account | None = None
    device: Device | None = None
    keys: dict[str, str] = field(default_factory=dict)  # noise, identity, adv, platform
    refs: list[str] = field(default_factory=list)  # the batch on offer, in order
    shown: str = ""  # the ref the page shows now (the server rotates them)
    rotation: asyncio.Task[None] | None = None
    previous: tuple[str, float] = ("", 0.0)  # the ref shown before, and when it went
    code: str = ""  # pairing code on offer
    code_phone: str = ""  # the phone number that code was asked for
    code_expires: float = 0.0
    state: str = "OPENING"  # the Socket.state the server last told the page
    took_over: bool = False  # Socket.takeover() after CONFLICT
    replaced: bool = False  # another page presented this device's credentials (CONFLICT)

    @property
    def phone(self) -> str:
        """The linked account's number, or ''."""
        return self.account.phone if self.account else ""

    async def send(self, msg_type: str, /, **data: Any) -> None:
        """One message to the page; a page that went away is not an error."""
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(json.dumps({"t": msg_type, **data}))

    def payload(self, ref: str) -> str:
        """The full QR payload of `ref` with this page's keys (docs/whatsapp-web.md §1a)."""
        k = self.keys
        parts = (k.get("noise", ""), k.get("identity", ""), k.get("adv", ""), k.get("platform", ""))
        return str(Payload(ref, *parts))

    def show(self, ref: str) -> None:
        """`ref` is the one on screen now ('' when the refs ran out: nothing can be scanned)."""
        self.previous = (self.shown, time.monotonic()) if ref else ("", 0.0)
        self.shown = ref

    def stop_rotation(self) -> None:
        """No more refs for this page (linked, pairing by code, or gone)."""
        if self.rotation is not None:
            self.rotation.cancel()
            self.rotation = None
        self.refs, self.shown, self.previous = [], "", ("", 0.0)

    def scannable(self, payload: Payload) -> bool:
        """True when `payload` is what this page shows now (or showed an instant ago)."""
        if payload.ref == self.shown:
            current = True
        else:
            ref, since = self.previous
            current = payload.ref == ref and time.monotonic() - since < REF_GRACE_S
        keys = (payload.noise, payload.identity, payload.adv)
        return current and keys == tuple(self.keys.get(k) for k in ("noise", "identity", "adv"))

    def unlink(self) -> None:
        """Forget the account (logout) and any QR or code on offer."""
        self.account = self.device = None
        self.stop_rotation()
        self.code = ""

    def summary(self) -> dict[str, Any]:
        """What `state()` reports about this page."""
        return {
            "page": self.page_id,
            "phone": self.phone,
            "device": self.device.device_id if self.device else "",
            "state": self.state,
            "qr": bool(self.shown),
            "code": self.code,
        }
