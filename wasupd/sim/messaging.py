"""Routing messages between accounts, acks 1 -> 2 -> 3, offline delivery and history.

§ numbers refer to docs/whatsapp-web.md (§4 here).
"""

from __future__ import annotations

import secrets
from typing import Any

from wasupd.sim import timing
from wasupd.sim.core import Core
from wasupd.sim.model import Account, Device, Message, normalize_group, normalize_phone
from wasupd.sim.pages import PageConn

HISTORY = 200  # messages a page restores on connect (the real page keeps recent ones)
ACK_FAILED = -1  # §4d


def chat_id(to: str) -> str:
    """A user number, `<n>@c.us` or a group id -> the wid a message is addressed to."""
    return normalize_group(to) if str(to).endswith("@g.us") else normalize_phone(to) + "@c.us"


class Messaging:
    """The server side of sending and receiving."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def send(self, conn: PageConn, msg: dict[str, Any]) -> None:
        """A page sends a message (`retry`: the page re-sends one it had pending)."""
        sender = conn.account
        if sender is None:
            return
        mid, chat = str(msg.get("id", "")), str(msg.get("to", ""))
        earlier = next((m for m in reversed(sender.sent) if m.id == mid), None)
        if earlier is not None and msg.get("retry"):
            earlier.resent += 1  # the server already has it: acknowledge again, deliver once
            await conn.send("ack", id=mid, ack=earlier.ack, result="OK")
            return
        rec = Message(
            mid, sender.wid, chat, str(msg.get("body", "")), type=str(msg.get("type", "chat"))
        )
        rec.dup = earlier is not None
        recipients = self.core.world.recipients(sender.phone, chat)
        sender.sent.append(rec)
        if not recipients:
            rec.ack = ACK_FAILED
            await conn.send("ack", id=mid, ack=ACK_FAILED, result="ERROR_UNKNOWN")
            return
        await conn.send("ack", id=mid, ack=1, result="OK")
        for other in self.core.live_pages(sender):
            if other is not conn:  # the sender's other devices see it too (multi-device)
                await other.send("msg", msg=self.as_page_msg(rec, sender.phone, from_me=True))
        await self.deliver(rec, recipients)

    async def inject(self, to: str, from_: str, text: str) -> str:
        """A message from `from_` (registered on the fly) to `to` (a number or a group)."""
        sender = self.core.world.add_account(from_) if from_ else None
        if sender is None:
            raise ValueError("inject needs `from`: the sender's phone number")
        chat = chat_id(to)
        recipients = self.core.world.recipients(sender.phone, chat)
        if not recipients:
            raise ValueError(f"{to} reaches no simulated account (add_account / add_group first)")
        rec = Message(secrets.token_hex(16).upper(), sender.wid, chat, str(text))  # §4a: android id
        sender.sent.append(rec)
        await self.deliver(rec, recipients)
        return rec.id

    async def deliver(self, rec: Message, recipients: list[Account]) -> None:
        """Record the arrival on every recipient's phone and push it to their live pages."""
        for acc in recipients:
            acc.received.append(rec)
            # A phone shows one message per id (the record keeps both); a note to self is
            # already on the sender's devices as its own message.
            if not rec.dup and acc.wid != rec.sender:
                for conn in self.core.live_pages(acc):
                    await conn.send("msg", msg=self.as_page_msg(rec, acc.phone, from_me=False))
        self.core.changed()
        sender = rec.sender.split("@")[0]
        self.core.later(self.core.t(timing.ACK_DELIVERED_S), lambda: self.ack(sender, rec, 2))
        if self.core.auto_read and all(acc.read_receipts for acc in recipients):
            self.core.later(self.core.t(timing.ACK_READ_S), lambda: self.ack(sender, rec, 3))

    async def ack(self, phone: str, rec: Message, level: int) -> None:
        """Raise the sender's ack of `rec` to `level` and tell the sender's live pages."""
        if rec.ack >= level:
            return
        rec.ack = level
        acc = self.core.world.accounts.get(phone)
        for conn in self.core.live_pages(acc) if acc else []:
            await conn.send("ack", id=rec.id, ack=level)
        self.core.changed()

    async def seen(self, conn: PageConn, chat: str) -> None:
        """`sendSeen(chat)`: the account read that chat; senders see ack 3 (if receipts on)."""
        acc = conn.account
        if acc is None or not acc.read_receipts:
            return
        for rec in acc.received:
            if rec.for_recipient(acc.phone)["chat"] == chat and rec.ack < 3:
                await self.ack(rec.sender.split("@")[0], rec, 3)

    def receipt(self, conn: PageConn, ids: list[str]) -> None:
        """The page confirms it added these inbound messages (they are not re-sent offline)."""
        if conn.device is not None:
            conn.device.delivered.update(str(i) for i in ids)

    async def exists(self, conn: PageConn, qid: Any, wid: str) -> None:
        """`queryWidExists`: a server round trip answering the wid, or null (§4b)."""
        await conn.send("exists", qid=qid, wid=wid if self.core.world.exists(wid) else None)

    def snapshot(self, acc: Account, dev: Device) -> dict[str, Any]:
        """What a page gets on connect: its chats, recent history and offline messages."""
        inbound = [m for m in acc.received if not m.dup and m.sender != acc.wid]
        offline = [m for m in inbound if m.arrived >= dev.linked_at and m.id not in dev.delivered]
        seen = {id(m) for m in offline}
        mine = [(m, True) for m in acc.sent if m.ack != ACK_FAILED]
        theirs = [(m, False) for m in inbound if id(m) not in seen]
        recent = sorted(mine + theirs, key=lambda pair: pair[0].arrived)[-HISTORY:]
        groups = self.core.world.groups_of(acc.phone)
        return {
            "chats": [{"id": g.wid, "name": g.name} for g in groups],
            "history": [self.as_page_msg(m, acc.phone, from_me=f) for m, f in recent],
            "offline": [self.as_page_msg(m, acc.phone, from_me=False) for m in offline],
        }

    @staticmethod
    def as_page_msg(rec: Message, phone: str, *, from_me: bool) -> dict[str, Any]:
        """The message as the page builds its `Msg` model from it."""
        group = rec.chat.endswith("@g.us")
        remote = rec.chat if (from_me or group) else rec.sender
        return {
            "id": rec.id,
            "fromMe": from_me,
            "remote": remote,
            "participant": rec.sender if group else None,
            "from": rec.sender if from_me or not group else rec.chat,
            "to": rec.chat if from_me else f"{phone}@c.us",
            "author": rec.sender if group else None,
            "body": rec.body,
            "type": rec.type,
            "t": rec.t,
            "ack": rec.ack if from_me else 0,
        }
