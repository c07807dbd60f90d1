"""Linking devices: hello with stored credentials, QR refs, pairing codes, logout.

§ numbers refer to docs/whatsapp-web.md (§1-§3 here).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from wasupd.sim import timing
from wasupd.sim.conflicts import Conflict
from wasupd.sim.core import Core
from wasupd.sim.messaging import Messaging
from wasupd.sim.model import Account, normalize_phone
from wasupd.sim.pages import PageConn
from wasupd.sim.qr import Payload, matrix, new_pairing_code, new_ref, normalize_code

LOGOUT_EVENTS = ("logout", "logout_from_bridge")  # §2b: the Cmd events a logout fires


class Linking:
    """The server side of linking; messages to pages go through `PageConn.send`."""

    def __init__(self, core: Core, messaging: Messaging) -> None:
        self.core = core
        self.history = messaging  # what a linked page gets on connect

    async def hello(self, conn: PageConn, msg: dict[str, Any]) -> None:
        """A page connected: restore it from its stored credentials, or offer a QR."""
        conn.keys = {k: str(v) for k, v in (msg.get("keys") or {}).items()}
        await asyncio.sleep(self.core.t(timing.OPENING_S))  # Socket.state stays OPENING
        found = self.core.world.check_creds(msg.get("creds"))
        if found:
            conn.account, conn.device = found
        for kind, params in self.core.faults.page_faults(conn):
            await conn.send("fault", kind=kind, params=params)
        if await self.forced_state(conn):
            return
        if conn.account is None:
            await self.unpaired(conn, clear=bool(msg.get("creds")))
        else:
            await self.replace_rivals(conn, "connect")
            await self.welcome(conn, "welcome")

    async def forced_state(self, conn: PageConn) -> bool:
        """Tell the page a state fault that covers it; True if there was one."""
        state = self.core.faults.forced_state(conn)
        if state is None:
            return False
        conn.state = state
        await conn.send("state", state=state)
        return True

    async def unpaired(self, conn: PageConn, *, clear: bool) -> None:
        """No valid credentials: the page shows a QR (`clear`: forget the stored ones)."""
        conn.state = "UNPAIRED"
        await conn.send("unpaired", clear=clear)
        await self.issue_refs(conn)

    async def welcome(self, conn: PageConn, kind: str, **extra: Any) -> None:
        """A linked page: who it is, its chats, history and messages that arrived offline."""
        acc, dev = conn.account, conn.device
        assert acc is not None and dev is not None
        conn.state = "CONNECTED"
        data = self.history.snapshot(acc, dev)
        me = {"me": acc.wid, "lid": acc.lid if acc.migrated else None}  # old world: no LID
        await conn.send(kind, **me, pushname=acc.name, platform=acc.platform, **data, **extra)

    async def issue_refs(self, conn: PageConn) -> None:
        """A new batch of refs (§1b), rotated by the server; then UNPAIRED_IDLE."""
        conn.stop_rotation()
        conn.refs = [new_ref() for _ in range(timing.REFS_PER_BATCH)]
        conn.rotation = self.core.spawn(self._rotate(conn, list(conn.refs)))

    async def _rotate(self, conn: PageConn, refs: list[str]) -> None:
        for i, ref in enumerate(refs):
            payload = conn.payload(ref)
            conn.show(ref)
            await conn.send("ref", ref=ref, payload=payload, matrix=matrix(payload))
            self.core.changed()
            await asyncio.sleep(self.core.t(timing.FIRST_REF_S if i == 0 else timing.NEXT_REF_S))
        conn.show("")  # the refs ran out: the page shows the reload button
        conn.state = "UNPAIRED_IDLE"
        await conn.send("idle")
        self.core.changed()

    async def issue_code(self, conn: PageConn, phone: str) -> None:
        """A pairing code for `phone` (§3), or a `code_error` the page rejects with."""
        try:
            acc = self.core.world.account(phone)
        except ValueError as exc:
            await conn.send("code_error", error=str(exc))
            return
        conn.stop_rotation()
        conn.code, conn.code_phone = new_pairing_code(), acc.phone
        conn.code_expires = time.monotonic() + self.core.t(timing.CODE_TTL_S)
        await conn.send("code", code=conn.code)
        self.core.changed()

    async def scan(self, text: str, phone: str) -> dict[str, Any]:
        """The phone of `phone` scans a QR payload: link the page that shows it."""
        acc = self.core.world.account(phone)
        payload = Payload.parse(text)
        for conn in self.core.pages:
            if conn.account is None and conn.scannable(payload):
                return await self.link(conn, acc)
        raise ValueError(
            "this QR is not on offer: it expired (refs rotate), was already used, "
            "or belongs to no open page; read the current one and scan again"
        )

    async def enter_code(self, code: str, phone: str) -> dict[str, Any]:
        """The phone of `phone` types a pairing code: link the page that asked for it."""
        acc = self.core.world.account(phone)
        wanted = normalize_code(code)
        for conn in self.core.pages:
            if conn.account is None and conn.code and conn.code == wanted:
                if conn.code_phone != acc.phone:
                    raise ValueError(f"this code was requested for {conn.code_phone}, not {phone}")
                if time.monotonic() > conn.code_expires:
                    raise ValueError("this pairing code expired: request a new one")
                return await self.link(conn, acc)
        raise ValueError("unknown pairing code: it was replaced by a newer one or never issued")

    async def link(self, conn: PageConn, acc: Account) -> dict[str, Any]:
        """Link `conn` as a new device of `acc`; its credentials go to the page's IndexedDB."""
        dev = self.core.world.link(acc)
        conn.account, conn.device = acc, dev
        conn.stop_rotation()
        conn.code = ""
        creds = {"phone": acc.phone, "device_id": dev.device_id, "token": dev.token}
        await self.welcome(conn, "paired", creds=creds)
        delay = self.core.faults.logout_delay(acc.phone)
        if delay is not None:
            self.core.later(self.core.t(delay), lambda: self.remote_logout(acc.phone))
        self.core.changed()
        return {"device": dev.device_id, "page": conn.page_id}

    async def page_logout(self, conn: PageConn) -> None:
        """`Socket.logout()` on the page: this device unlinks itself."""
        if conn.account is not None and conn.device is not None:
            conn.account.devices.pop(conn.device.device_id, None)
        conn.unlink()
        conn.state = "UNPAIRED"
        await conn.send("logout", reason="user_initiated", event="logout")
        self.core.changed()

    async def remote_logout(self, phone: str, event: str = "logout") -> int:
        """The phone unlinks every device: credentials die server-side, live pages are told."""
        if event not in LOGOUT_EVENTS:
            raise ValueError(f"event must be one of {', '.join(LOGOUT_EVENTS)}")
        acc = self.core.world.account(phone)
        count = len(acc.devices)
        acc.devices.clear()
        for conn in self.core.live_pages(acc):
            conn.unlink()
            conn.state = "UNPAIRED"
            await conn.send("logout", reason="unknown_companion", event=event)
        self.core.changed()
        return count

    async def takeover(self, conn: PageConn) -> None:
        """`Socket.takeover()` after CONFLICT: this page becomes the active one again (and
        the page that had replaced it is the one in CONFLICT now)."""
        conn.took_over = True
        if conn.account is not None and not await self.forced_state(conn):
            if conn.replaced:
                conn.replaced = False
                await self.replace_rivals(conn, "takeover")
            await self.welcome(conn, "welcome")  # CONNECTED again, with what it missed

    async def replace_rivals(self, conn: PageConn, how: str) -> None:
        """`conn` is now its device's one connection: every other page presenting the same
        credentials goes to CONFLICT (nothing flows to or from it) and the moment is recorded
        (`conflicts`)."""
        rivals = [
            p
            for p in self.core.pages
            if p is not conn and p.device is not None and p.device is conn.device and not p.replaced
        ]
        for rival in rivals:
            rival.replaced = True
            rival.state = "CONFLICT"
            device = rival.device.device_id if rival.device else ""
            self.core.conflicts.record(
                Conflict(rival.phone, device, rival.page_id, conn.page_id, how)
            )
            await rival.send("state", state="CONFLICT")
        if rivals:
            self.core.changed()

    def pages_of(self, phone: str) -> list[PageConn]:
        """Pages linked to `phone` (stalled ones too)."""
        phone = normalize_phone(phone)
        return [p for p in self.core.pages if p.phone == phone]
