"""The simulator's HTTP server: the page at `/`, its WebSocket at `/ws`, the control API at `/_sim/`.

The page (static/app.js) talks to this server over a real WebSocket, as WhatsApp Web talks to
WhatsApp's servers, so "server down", "silent stall" and round trips are real. Every duration
(QR ref lifetimes, sync delay, acks, pairing-code refresh) is multiplied by `time_factor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import segno
from aiohttp import WSMsgType, web

from wasupd.sim.model import Account, World, new_pairing_code, new_ref

VERSION = "2.3000.1017054665"
REFS_PER_BATCH = 6
FIRST_REF_S = 60.0
NEXT_REF_S = 20.0
CODE_TTL_S = 180.0
SYNC_DELAY_S = 2.0
ACK_DELIVERED_S = 0.3
ACK_READ_S = 1.5
# At rest real WhatsApp Web holds ~40-80 MiB of JS heap (chats, contacts, the app itself);
# the default models the low end so 50-session capacity runs stay representative.
DEFAULT_PAGE_WEIGHT_MIB = 40
STATE_FAULTS = ("conflict", "timeout", "tos_block", "deprecated_version")


@dataclass(eq=False)
class PageConn:
    """One page's WebSocket: which account it is linked to, its refs and pairing code."""

    ws: web.WebSocketResponse
    account: Account | None = None
    device_id: str = ""
    refs: dict[str, float] = field(default_factory=dict)  # ref -> expiry (monotonic)
    payloads: dict[str, str] = field(default_factory=dict)
    code: str = ""
    code_phone: str = ""

    async def send(self, msg: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(json.dumps(msg))


class SimServer:
    """The simulated WhatsApp Web server; `await start()`, `.url`, `await stop()`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        time_factor: float = 1.0,
        page_weight_mib: int = DEFAULT_PAGE_WEIGHT_MIB,
        auto_read: bool = True,
    ) -> None:
        self.host, self.port = host, port
        self.time_factor = time_factor
        self.page_weight_mib = page_weight_mib
        self.auto_read = auto_read
        self.world = World()
        self.conns: set[PageConn] = set()
        self.faults: dict[str, Any] = {}
        self.codes: dict[str, PageConn] = {}
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""

    def t(self, seconds: float) -> float:
        """A duration scaled by the time factor."""
        return seconds * self.time_factor

    # -- lifetime --------------------------------------------------------------------------

    async def start(self) -> SimServer:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/app.js", self._script)
        app.router.add_get("/ws", self._ws)
        app.router.add_post("/_sim/{action}", self._control)
        app.router.add_get("/_sim/{action}", self._control)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}/"
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self.conns):
            with contextlib.suppress(Exception):
                await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _later(self, delay: float, coro: Any) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            await coro

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- page ------------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.Response:
        html = resources.files("wasupd.sim").joinpath("static/index.html").read_text()
        config = {
            "version": VERSION,
            "timeFactor": self.time_factor,
            "firstRefMs": self.t(FIRST_REF_S) * 1000,
            "nextRefMs": self.t(NEXT_REF_S) * 1000,
            "syncDelayMs": self.t(SYNC_DELAY_S) * 1000,
            "pageWeightMiB": self.page_weight_mib,
        }
        html = html.replace("/*SIM_CONFIG*/", f"window.__SIM__ = {json.dumps(config)};")
        return web.Response(text=html, content_type="text/html")

    async def _script(self, request: web.Request) -> web.Response:
        js = resources.files("wasupd.sim").joinpath("static/app.js").read_text()
        return web.Response(text=js, content_type="application/javascript")

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self.faults.get("server_down"):
            raise web.HTTPServiceUnavailable()
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=64 << 20)
        await ws.prepare(request)
        conn = PageConn(ws)
        self.conns.add(conn)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                if conn.account and self.faults.get("stall", {}).get(conn.account.phone):
                    continue  # silent stall: the server swallows everything from this device
                await self._on_page(conn, json.loads(msg.data))
        finally:
            self.conns.discard(conn)
            if conn.code:
                self.codes.pop(conn.code, None)
        return ws

    async def _on_page(self, conn: PageConn, msg: dict[str, Any]) -> None:
        kind = msg.get("t")
        if kind == "hello":
            await self._hello(conn, msg)
        elif kind == "refs":
            await self._issue_refs(conn, msg.get("keys") or {})
        elif kind == "pair_code":
            await self._issue_code(conn, str(msg.get("phone", "")))
        elif kind == "exists":
            await conn.send(
                {
                    "t": "exists",
                    "qid": msg.get("qid"),
                    "wid": msg["wid"] if self.world.exists(str(msg.get("wid"))) else None,
                }
            )
        elif kind == "send" and conn.account is not None:
            await self._route(conn.account, msg, conn)
        elif kind == "logout" and conn.account is not None:
            conn.account.devices.pop(conn.device_id, None)
            await conn.send({"t": "logout", "reason": "user_initiated"})
        elif kind == "read" and conn.account is not None:
            pass

    async def _hello(self, conn: PageConn, msg: dict[str, Any]) -> None:
        if self.faults.get("state"):
            await conn.send({"t": "state", "state": self.faults["state"]})
            return
        acc = self.world.check_creds(msg.get("creds"))
        if acc is None:
            await conn.send({"t": "unpaired", "clear": bool(msg.get("creds"))})
            return
        conn.account, conn.device_id = acc, str(msg["creds"]["device_id"])
        await conn.send(
            {"t": "welcome", "me": acc.wid, "pushname": acc.name, "history": self._history(acc)}
        )

    def _history(self, acc: Account) -> list[dict[str, Any]]:
        """Recent messages the page restores after a reload (its own sent ones and received)."""
        return [*acc.sent[-200:], *acc.received[-200:]]

    async def _issue_refs(self, conn: PageConn, keys: dict[str, str]) -> None:
        now = time.monotonic()
        conn.refs.clear()
        conn.payloads.clear()
        batch = []
        expiry = now
        for i in range(REFS_PER_BATCH):
            ref = new_ref()
            expiry += self.t(FIRST_REF_S if i == 0 else NEXT_REF_S)
            conn.refs[ref] = expiry
            payload = ",".join(
                [
                    ref,
                    keys.get("noise", ""),
                    keys.get("identity", ""),
                    keys.get("adv", ""),
                    keys.get("platform", "1"),
                ]
            )
            conn.payloads[ref] = payload
            qr = segno.make_qr(payload, error="l")
            matrix = ["".join("1" if v else "0" for v in row) for row in qr.matrix]
            batch.append({"ref": ref, "matrix": matrix})
        await conn.send({"t": "refs", "refs": batch})

    async def _issue_code(self, conn: PageConn, phone: str) -> None:
        if conn.code:
            self.codes.pop(conn.code, None)
        conn.code, conn.code_phone = new_pairing_code(), phone
        self.codes[conn.code] = conn
        await conn.send({"t": "code", "code": conn.code, "ttl_ms": self.t(CODE_TTL_S) * 1000})

    async def _complete_link(self, conn: PageConn, phone: str) -> None:
        dev = self.world.link(phone)
        acc = self.world.accounts[phone]
        conn.account, conn.device_id = acc, dev.device_id
        conn.refs.clear()
        creds = {"phone": phone, "device_id": dev.device_id, "token": dev.token}
        await conn.send({"t": "paired", "creds": creds, "me": acc.wid, "pushname": acc.name})
        after = self.faults.get("logout_after", {}).get(phone)
        if after is not None:
            self._later(self.t(float(after)), self.remote_logout(phone))

    # -- messages --------------------------------------------------------------------------

    def _conns_of(self, acc: Account) -> list[PageConn]:
        return [
            c
            for c in self.conns
            if c.account is acc and not self.faults.get("stall", {}).get(acc.phone)
        ]

    async def _route(self, sender: Account, msg: dict[str, Any], conn: PageConn) -> None:
        to = str(msg.get("to", ""))
        record = {
            "id": msg.get("id"),
            "from": sender.wid,
            "to": to,
            "body": msg.get("body", ""),
            "t": int(time.time()),
            "type": "chat",
        }
        recipients = self.world.recipients(to)
        if not recipients:
            await conn.send(
                {"t": "ack", "id": msg.get("id"), "to": to, "ack": -1, "error": "not on WhatsApp"}
            )
            return
        sender.sent.append(record)
        await conn.send({"t": "ack", "id": msg.get("id"), "to": to, "ack": 1})
        for acc in recipients:
            acc.received.append(record)
            for c in self._conns_of(acc):
                await c.send(
                    {
                        "t": "msg",
                        "msg": {
                            **record,
                            "fromMe": False,
                            "chat": sender.wid if "@g.us" not in to else to,
                        },
                    }
                )
        self._later(self.t(ACK_DELIVERED_S), self._ack(sender, record, 2))
        if self.auto_read:
            self._later(self.t(ACK_READ_S), self._ack(sender, record, 3))

    async def _ack(self, sender: Account, record: dict[str, Any], ack: int) -> None:
        for c in self._conns_of(sender):
            await c.send({"t": "ack", "id": record["id"], "to": record["to"], "ack": ack})

    async def inject(self, to: str, from_: str, text: str) -> str:
        """A message from `from_` (need not be linked) to account `to`; its id."""
        sender = (
            self.world.add_account(from_)
            if from_ not in self.world.accounts
            else self.world.accounts[from_]
        )
        mid = "3A" + secrets.token_hex(9).upper()
        record = {
            "id": mid,
            "from": sender.wid,
            "to": f"{to}@c.us",
            "body": text,
            "t": int(time.time()),
            "type": "chat",
        }
        sender.sent.append(record)
        acc = self.world.accounts[to]
        acc.received.append(record)
        for c in self._conns_of(acc):
            await c.send({"t": "msg", "msg": {**record, "fromMe": False, "chat": sender.wid}})
        return mid

    async def remote_logout(self, phone: str) -> None:
        """The phone unlinks every device: credentials die server-side, pages are told."""
        acc = self.world.accounts[phone]
        acc.devices.clear()
        for c in [c for c in self.conns if c.account is acc]:
            await c.send({"t": "logout", "reason": "unknown_companion"})
            c.account = None

    # -- control API -----------------------------------------------------------------------

    async def _control(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        body: dict[str, Any] = {}
        if request.method == "POST" and request.can_read_body:
            body = await request.json()
        body.update(request.query)
        try:
            result = await self.control(action, body)
        except KeyError as exc:
            return web.json_response({"error": f"unknown {exc}"}, status=404)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"result": result})

    async def control(self, action: str, p: dict[str, Any]) -> Any:
        """The control API, also callable in-process."""
        if action == "add_account":
            return self.world.add_account(str(p["phone"]), str(p.get("name", ""))).wid
        if action == "add_group":
            self.world.groups[str(p["group_id"])] = [str(m) for m in p["members"]]
            return p["group_id"]
        if action == "scan":
            return await self._scan(str(p["payload"]), str(p["phone"]))
        if action == "enter_code":
            conn = self.codes.get(str(p["code"]).replace("-", "").upper())
            if conn is None or conn.code_phone not in (str(p["phone"]), ""):
                raise ValueError("unknown or expired pairing code")
            self.codes.pop(conn.code, None)
            await self._complete_link(conn, str(p["phone"]))
            return True
        if action == "inject":
            return await self.inject(str(p["to"]), str(p["from"]), str(p["text"]))
        if action == "received":
            return self.world.accounts[str(p["phone"])].received
        if action == "sent":
            return self.world.accounts[str(p["phone"])].sent
        if action == "devices":
            return [d.device_id for d in self.world.accounts[str(p["phone"])].devices.values()]
        if action == "logout":
            await self.remote_logout(str(p["phone"]))
            return True
        if action == "fault":
            return await self._fault(str(p["kind"]), p)
        if action == "clear_fault":
            kind = str(p["kind"])
            self.faults.pop("state" if kind in STATE_FAULTS else kind, None)
            return True
        if action == "state":
            return {
                "accounts": sorted(self.world.accounts),
                "connections": len(self.conns),
                "faults": sorted(self.faults),
            }
        raise KeyError(action)

    async def _scan(self, payload: str, phone: str) -> bool:
        if phone not in self.world.accounts:
            raise ValueError(f"{phone} is not a simulated account (add_account first)")
        ref = payload.split(",", 1)[0]
        now = time.monotonic()
        for conn in self.conns:
            if ref in conn.refs:
                current = min(
                    (r for r, exp in conn.refs.items() if exp > now),
                    key=lambda r: conn.refs[r],
                    default=None,
                )
                if ref != current or conn.payloads.get(ref) != payload:
                    raise ValueError("QR code expired or not the one on screen")
                await self._complete_link(conn, phone)
                return True
        raise ValueError("QR code not recognised (expired, or from another session)")

    async def _fault(self, kind: str, p: dict[str, Any]) -> bool:
        phone = str(p.get("phone", ""))
        if kind == "stall":
            self.faults.setdefault("stall", {})[phone] = True
        elif kind == "server_down":
            self.faults["server_down"] = True
            for c in list(self.conns):
                await c.ws.close()
        elif kind == "server_up":
            self.faults.pop("server_down", None)
        elif kind == "logout_after":
            self.faults.setdefault("logout_after", {})[phone] = float(p.get("seconds", 5))
        elif kind in STATE_FAULTS:
            state = kind.upper()
            self.faults["state"] = state
            for c in self.conns:
                if not phone or (c.account and c.account.phone == phone):
                    await c.send({"t": "state", "state": state})
        elif kind in ("memory", "slow_idb", "hang_close", "hang"):
            for c in self.conns:
                if not phone or (c.account and c.account.phone == phone):
                    await c.send({"t": "fault", "kind": kind, "params": p})
        elif kind == "qr_never_scanned":
            pass  # nothing to do: simply never call scan(); documented for symmetry
        else:
            raise ValueError(f"unknown fault {kind!r}")
        if kind not in ("stall", "server_down", "server_up", "logout_after", *STATE_FAULTS):
            self.faults[kind] = True
        return True
