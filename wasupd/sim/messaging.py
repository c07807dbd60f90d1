"""Routing messages between accounts, acks 1 -> 2 -> 3, offline delivery and history.

§ numbers refer to docs/whatsapp-web.md (§4 here).
"""

from __future__ import annotations

import secrets
from typing import Any

from wasupd.sim import lids, timing
from wasupd.sim.core import Core
from wasupd.sim.media import decode_b64, media_record
from wasupd.sim.model import (
    Account,
    Device,
    Group,
    Message,
    normalize_group,
    normalize_lid,
    normalize_phone,
)
from wasupd.sim.pages import PageConn

HISTORY = 200  # messages a page restores on connect (the real page keeps recent ones)
ACK_FAILED = -1  # §4d


def chat_id(to: str) -> str:
    """A user number, `<n>@c.us`, `<lid>@lid` or a group id -> the wid a message is addressed to."""
    if str(to).endswith("@g.us"):
        return normalize_group(to)
    return normalize_lid(to) + "@lid" if str(to).endswith("@lid") else normalize_phone(to) + "@c.us"


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
        body, kind = str(msg.get("body", "")), str(msg.get("type", "chat"))
        rec = Message(mid, sender.wid, self.core.world.canonical(chat) or chat, body, type=kind)
        rec.addressed = chat
        if msg.get("media") is not None and not self._attach(rec, msg["media"]):
            sender.sent.append(rec)  # a reference to nothing uploaded: refused (§4g)
            rec.ack = ACK_FAILED
            await conn.send("ack", id=mid, ack=ACK_FAILED, result="ERROR_UNKNOWN")
            return
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
                await other.send("msg", msg=self.as_page_msg(rec, sender, from_me=True))
        await self.deliver(rec, recipients)

    def _attach(self, rec: Message, ref: dict[str, Any]) -> bool:
        """Give `rec` the media its page uploaded (by direct path); False when the server has
        no such upload or the hash does not match it."""
        blob = self.core.media.by_path(str(ref.get("directPath", "")))
        if blob is None or str(ref.get("filehash", "")) != blob.filehash:
            return False
        rec.media = media_record(
            blob,
            rec.type,
            str(ref.get("mimetype", "")),
            str(ref.get("filename") or ""),
            str(ref.get("caption") or ""),
        )
        return True

    async def inject(
        self, to: str, from_: str, text: str, media: dict[str, Any] | None = None
    ) -> str:
        """A message from `from_` to `to` (a number, a LID or a group). A number that is not
        registered is registered on the fly (LID-migrated, as new accounts are); a registered
        one is used as it is (an old-world account stays one); a LID must be an account's.
        `media` (`data` base64, `kind`, `mimetype`, `filename`): a file sent from the phone,
        with `text` as its caption."""
        world = self.core.world
        if not from_:
            raise ValueError("inject needs `from`: the sender's phone number or LID")
        if str(from_).endswith("@lid"):
            sender = world.sender(from_)
        else:
            sender = world.resolve(f"{normalize_phone(from_)}@c.us") or world.add_account(from_)
        chat = world.canonical(chat_id(to))
        recipients = world.recipients(sender.phone, chat) if chat else []
        if not recipients:
            raise ValueError(f"{to} reaches no simulated account (add_account / add_group first)")
        rec = Message(secrets.token_hex(16).upper(), sender.wid, chat, str(text))  # §4a: android id
        if media is not None:
            self._inject_media(rec, media)
        sender.sent.append(rec)
        await self.deliver(rec, recipients)
        return rec.id

    def _inject_media(self, rec: Message, media: dict[str, Any]) -> None:
        """The phone uploads the file, then sends a message referring to it."""
        if not isinstance(media, dict) or "data" not in media:
            raise ValueError("inject media must be an object with data (base64), kind, mimetype")
        kind = str(media.get("kind") or "document")
        blob = self.core.media.put(decode_b64(media["data"], "inject media.data"))
        mimetype, filename = str(media.get("mimetype") or ""), str(media.get("filename") or "")
        rec.media = media_record(blob, kind, mimetype, filename, rec.body)
        rec.type, rec.body = kind, ""

    async def deliver(self, rec: Message, recipients: list[Account]) -> None:
        """Record the arrival on every recipient's phone and push it to their live pages."""
        for acc in recipients:
            acc.received.append(rec)
            # A phone shows one message per id (the record keeps both); a note to self is
            # already on the sender's devices as its own message.
            if not rec.dup and acc.wid != rec.sender:
                for conn in self.core.live_pages(acc):
                    await conn.send("msg", msg=self.as_page_msg(rec, acc, from_me=False))
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
        chat = self.core.world.canonical(chat) or chat  # a migrated page names it by LID
        for rec in acc.received:
            if rec.for_recipient(acc.phone)["chat"] == chat and rec.ack < 3:
                await self.ack(rec.sender.split("@")[0], rec, 3)

    def receipt(self, conn: PageConn, ids: list[str]) -> None:
        """The page confirms it added these inbound messages (they are not re-sent offline)."""
        if conn.device is not None:
            conn.device.delivered.update(str(i) for i in ids)

    async def exists(self, conn: PageConn, qid: Any, wid: str) -> None:
        """`queryWidExists`: a server round trip answering the wid (with its LID and number
        as far as this page may know them), or null (§4b, §4e)."""
        viewer = conn.account
        if viewer is None:  # a page no longer linked (logged out) gets no answer, not a "no"
            await conn.send("exists", qid=qid, error="not logged in")
            return
        acc = self.core.world.resolve(wid)
        if acc is None:
            await conn.send("exists", qid=qid, wid=None)
            return
        await conn.send("exists", qid=qid, **lids.exists_answer(acc, viewer, wid))

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
            "chats": [self.group_chat(g, acc) for g in groups],
            "history": [self.as_page_msg(m, acc, from_me=f) for m, f in recent],
            "offline": [self.as_page_msg(m, acc, from_me=False) for m in offline],
        }

    def group_chat(self, group: Group, viewer: Account) -> dict[str, Any]:
        """A group as `viewer`'s page shows it: members by LID or number, and what the page
        learns about them."""
        members = [self.core.world.accounts[p] for p in group.members]
        return {
            "id": group.wid,
            "name": group.name,
            "lidMode": group.lid_mode and viewer.migrated,
            "participants": [lids.member_id(m, viewer, group) for m in members],
            "pairs": [p for m in members if (p := lids.pair(m, viewer))],
        }

    def as_page_msg(self, rec: Message, viewer: Account, *, from_me: bool) -> dict[str, Any]:
        """The message as `viewer`'s page builds its `Msg` model from it (§4a, §4e)."""
        world = self.core.world
        author = world.resolve(rec.sender) or viewer
        group = world.groups.get(rec.chat)
        if group is not None:
            remote = rec.chat
            member = lids.member_id(author, viewer, group)
            me = lids.member_id(viewer, viewer, group)
            sender, to = (member, rec.chat) if from_me else (rec.chat, me)
            known = [author]
        else:
            other = world.resolve(rec.chat) if from_me else author
            remote = lids.user_id(other or viewer, viewer)
            me = lids.user_id(viewer, viewer)
            member = None
            sender, to = (me, remote) if from_me else (remote, me)
            known = [author, other or viewer]
        return {
            "id": rec.id,
            "fromMe": from_me,
            "remote": remote,
            "participant": member,
            "from": sender,
            "to": to,
            "author": member,
            "body": rec.body,
            # The sender's push name, as WhatsApp Web's Msg.notifyName (empty for own messages).
            "notifyName": "" if from_me else author.name,
            "type": rec.type,
            "t": rec.t,
            "ack": rec.ack if from_me else 0,
            "pairs": [p for a in known if (p := lids.pair(a, viewer))],
            "media": _page_media(rec.media),
        }


def _page_media(media: dict[str, Any] | None) -> dict[str, Any] | None:
    """The media fields a page's Msg carries (WhatsApp Web names, §4g)."""
    if media is None:
        return None
    return {
        "mimetype": media["mimetype"],
        "size": media["size"],
        "filehash": media["filehash"],
        "encFilehash": media["filehash"],
        "directPath": media["direct_path"],
        "mediaKey": media["filehash"],  # no encryption modelled: a stand-in key
        "filename": media["filename"] or None,
        "caption": media["caption"],
    }
