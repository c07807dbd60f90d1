"""The simulated WhatsApp's world: accounts (one phone each), linked devices, groups, messages.

This is the server side's memory. `Account.received` is the judge of "delivered exactly once"
tests: every message that reached the account's phone is appended, repeats included (a repeat
of an id already delivered carries `dup: true`); nothing is ever deduplicated silently.
§ numbers refer to docs/whatsapp-web.md.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

PLATFORMS = ("android", "iphone", "smba", "smbi")  # §9: Conn.serialize().platform
_PHONE = re.compile(r"^[1-9][0-9]{5,17}$")  # §3: international digits, no symbols


def normalize_phone(value: str) -> str:
    """`+1 555-000 1111`, `15550001111@c.us` -> `15550001111`; ValueError when not a number."""
    digits = re.sub(r"[\s+()\-.]", "", str(value)).removesuffix("@c.us")
    if not _PHONE.match(digits):
        raise ValueError(
            f"{value!r} is not a phone number (international digits, e.g. 15550001111)"
        )
    return digits


def normalize_group(value: str) -> str:
    """`120363...` or `120363...@g.us` -> `120363...@g.us`."""
    gid = str(value).removesuffix("@g.us")
    if not re.match(r"^[0-9A-Za-z-]{1,64}$", gid):
        raise ValueError(f"{value!r} is not a group id (digits, e.g. 120363012345678901)")
    return gid + "@g.us"


@dataclass
class Message:
    """One message as the server routed it; `ack` is the sender's view (§4d)."""

    id: str
    sender: str  # wid of the author
    chat: str  # wid the sender addressed: a user or a group
    body: str
    t: int = field(default_factory=lambda: int(time.time()))
    type: str = "chat"
    ack: int = 1
    dup: bool = False
    resent: int = 0
    arrived: float = field(default_factory=time.time)

    def for_recipient(self, phone: str) -> dict[str, Any]:
        """The record as `received(phone)` lists it."""
        group = self.chat.endswith("@g.us")
        return {
            "id": self.id,
            "from": self.sender,
            "to": f"{phone}@c.us",
            "chat": self.chat if group else self.sender,
            "body": self.body,
            "t": self.t,
            "type": self.type,
            "dup": self.dup,
        }

    def for_sender(self) -> dict[str, Any]:
        """The record as `sent(phone)` lists it."""
        return {
            "id": self.id,
            "from": self.sender,
            "to": self.chat,
            "body": self.body,
            "t": self.t,
            "type": self.type,
            "ack": self.ack,
            "dup": self.dup,
            "resent": self.resent,
        }


@dataclass
class Device:
    """One linked companion device (a browser profile) of an account."""

    device_id: str
    token: str
    linked_at: float
    delivered: set[str] = field(default_factory=set)  # ids the device confirmed


@dataclass
class Account:
    """One simulated phone number and its phone."""

    phone: str
    name: str = ""
    platform: str = "android"
    read_receipts: bool = True
    devices: dict[str, Device] = field(default_factory=dict)
    received: list[Message] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)

    @property
    def wid(self) -> str:
        """`<digits>@c.us` (§4a)."""
        return f"{self.phone}@c.us"


@dataclass
class Group:
    """A group chat `<id>@g.us` and its member phone numbers."""

    wid: str
    name: str
    members: list[str]


@dataclass
class World:
    """Every account and group the simulated server knows."""

    accounts: dict[str, Account] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)

    def add_account(
        self, phone: str, name: str = "", platform: str = "android", *, read_receipts: bool = True
    ) -> Account:
        """Register a number on (simulated) WhatsApp; registering it again updates it."""
        if platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}, not {platform!r}")
        phone = normalize_phone(phone)
        acc = self.accounts.setdefault(phone, Account(phone))
        acc.name, acc.platform, acc.read_receipts = name or acc.name, platform, read_receipts
        return acc

    def account(self, phone: str) -> Account:
        """The account of `phone`; ValueError saying how to register it."""
        acc = self.accounts.get(normalize_phone(phone))
        if acc is None:
            raise ValueError(f"{phone} is not a simulated account: add_account it first")
        return acc

    def add_group(self, group_id: str, members: list[str], name: str = "") -> Group:
        """Create (or replace) a group of registered accounts."""
        wid = normalize_group(group_id)
        phones = [self.account(m).phone for m in members]
        group = Group(wid, name or wid.split("@")[0], phones)
        self.groups[wid] = group
        return group

    def exists(self, wid: str) -> bool:
        """True for registered users (`@c.us`); groups and others are not users (§4b)."""
        user, _, server = str(wid).partition("@")
        return server in ("c.us", "s.whatsapp.net") and user in self.accounts

    def link(self, acc: Account) -> Device:
        """A new linked device for `acc` with fresh credentials."""
        dev = Device(secrets.token_hex(8), secrets.token_urlsafe(24), time.time())
        acc.devices[dev.device_id] = dev
        return dev

    def check_creds(self, creds: object) -> tuple[Account, Device] | None:
        """The account and device the stored credentials name, or None (unknown or revoked)."""
        if not isinstance(creds, dict):
            return None
        acc = self.accounts.get(str(creds.get("phone", "")))
        dev = acc.devices.get(str(creds.get("device_id", ""))) if acc else None
        if acc is None or dev is None:
            return None
        if not secrets.compare_digest(dev.token, str(creds.get("token", ""))):
            return None
        return acc, dev

    def recipients(self, sender: str, chat: str) -> list[Account]:
        """Accounts a message from `sender` (a phone) to `chat` reaches (groups: the others)."""
        if chat.endswith("@g.us"):
            group = self.groups.get(chat)
            members = group.members if group and sender in group.members else []
            return [self.accounts[m] for m in members if m != sender]
        user = chat.split("@", maxsplit=1)[0]
        return [self.accounts[user]] if self.exists(chat) else []

    def groups_of(self, phone: str) -> list[Group]:
        """Groups `phone` is a member of."""
        return [g for g in self.groups.values() if phone in g.members]
