"""The simulated WhatsApp's world: accounts (one phone each), linked devices, groups, messages.

This is the server side's memory. `Account.received` is the judge of "delivered exactly once"
tests: every message that reached the account's phone is appended, repeats included (a repeat
of an id already delivered carries `dup: true`); nothing is ever deduplicated silently.
§ numbers refer to docs/whatsapp-web.md.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

PLATFORMS = ("android", "iphone", "smba", "smbi")  # §9: Conn.serialize().platform
_PHONE = re.compile(r"^[1-9][0-9]{5,17}$")  # §3: international digits, no symbols
_LID = re.compile(r"^[1-9][0-9]{5,20}$")
USER_SERVERS = ("c.us", "s.whatsapp.net")  # a phone number's wid; `lid` is the LID's (§4e)


def normalize_phone(value: str) -> str:
    """`+1 555-000 1111`, `15550001111@c.us` -> `15550001111`; ValueError when not a number."""
    digits = re.sub(r"[\s+()\-.]", "", str(value)).removesuffix("@c.us")
    if not _PHONE.match(digits):
        raise ValueError(
            f"{value!r} is not a phone number (international digits, e.g. 15550001111)"
        )
    return digits


def normalize_lid(value: str) -> str:
    """`123456789012345@lid` -> `123456789012345`; ValueError when not a LID."""
    digits = str(value).strip().removesuffix("@lid")
    if not str(value).strip().endswith("@lid") or not _LID.match(digits):
        raise ValueError(f"{value!r} is not a LID (digits then @lid, e.g. 201234567890123@lid)")
    return digits


def lid_of(phone: str) -> str:
    """The LID the simulated server gives `phone`: 15 digits, stable for a number (§4e: a
    LID does not reveal the number, so it is a hash, not a transformation of it)."""
    digest = int.from_bytes(hashlib.sha256(f"lid:{phone}".encode()).digest()[:8], "big")
    return "2" + str(digest % 10**14).zfill(14)


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
    addressed: str = ""  # what the sender's page named: a `@lid` or `@c.us` wid, or the group
    ack: int = 1
    dup: bool = False
    resent: int = 0
    arrived: float = field(default_factory=time.time)
    media: dict[str, Any] | None = None  # `media.media_record`: kind, size, sha256, caption...

    def media_fields(self) -> dict[str, Any]:
        """`kind` ("text" or the media kind) and, for media, its size, sha256, caption,
        MIME type and file name, as `received` and `sent` list them."""
        if self.media is None:
            return {"kind": "text"}
        keep = ("kind", "size", "sha256", "caption", "mimetype", "filename")
        return {k: self.media[k] for k in keep}

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
            **self.media_fields(),
        }

    def for_sender(self) -> dict[str, Any]:
        """The record as `sent(phone)` lists it."""
        return {
            "id": self.id,
            "from": self.sender,
            "to": self.chat,
            "addressed": self.addressed or self.chat,
            "body": self.body,
            "t": self.t,
            "type": self.type,
            "ack": self.ack,
            "dup": self.dup,
            "resent": self.resent,
            **self.media_fields(),
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
    """One simulated phone number and its phone.

    Every account has a LID beside its number. `migrated` (the default, as on WhatsApp now)
    means its own pages address 1:1 chats by LID; False is the old world, where its pages see
    phone numbers only. `hides_number`: other pages never learn this number from its LID.
    """

    phone: str
    name: str = ""
    platform: str = "android"
    read_receipts: bool = True
    migrated: bool = True
    hides_number: bool = False
    devices: dict[str, Device] = field(default_factory=dict)
    received: list[Message] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)

    @property
    def wid(self) -> str:
        """`<digits>@c.us` (§4a)."""
        return f"{self.phone}@c.us"

    @property
    def lid(self) -> str:
        """`<digits>@lid` (§4e)."""
        return f"{lid_of(self.phone)}@lid"


@dataclass
class Group:
    """A group chat `<id>@g.us` and its member phone numbers; `lid_mode`: LID addressing
    (members and authors named by LID on migrated accounts' pages, §4e)."""

    wid: str
    name: str
    members: list[str]
    lid_mode: bool = False


@dataclass
class World:
    """Every account and group the simulated server knows."""

    accounts: dict[str, Account] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)

    def add_account(
        self,
        phone: str,
        name: str = "",
        platform: str = "android",
        *,
        read_receipts: bool = True,
        lid: bool = True,
    ) -> Account:
        """Register a number on (simulated) WhatsApp; registering it again updates it.
        `lid=False`: the account is not LID-migrated (its pages see numbers only)."""
        if platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}, not {platform!r}")
        phone = normalize_phone(phone)
        acc = self.accounts.setdefault(phone, Account(phone))
        acc.name, acc.platform, acc.read_receipts = name or acc.name, platform, read_receipts
        acc.migrated = bool(lid)
        return acc

    def resolve(self, wid: str) -> Account | None:
        """The account a user wid names: `<n>@c.us`, `<n>@s.whatsapp.net` or `<lid>@lid`."""
        user, _, server = str(wid).partition("@")
        if server in USER_SERVERS:
            return self.accounts.get(user)
        if server == "lid":
            return next((a for a in self.accounts.values() if lid_of(a.phone) == user), None)
        return None

    def sender(self, value: str) -> Account:
        """The account behind `value` (a number, `@c.us` or `@lid`); ValueError saying how."""
        if str(value).endswith("@lid"):
            acc = self.resolve(normalize_lid(value) + "@lid")
            if acc is None:
                raise ValueError(f"{value} is no simulated account's LID: read it with `account`")
            return acc
        return self.account(value)

    def account(self, phone: str) -> Account:
        """The account of `phone`; ValueError saying how to register it."""
        acc = self.accounts.get(normalize_phone(phone))
        if acc is None:
            raise ValueError(f"{phone} is not a simulated account: add_account it first")
        return acc

    def add_group(
        self, group_id: str, members: list[str], name: str = "", *, lid_mode: bool = False
    ) -> Group:
        """Create (or replace) a group of registered accounts (numbers or LIDs)."""
        wid = normalize_group(group_id)
        phones = [self.sender(m).phone for m in members]
        group = Group(wid, name or wid.split("@")[0], phones, lid_mode)
        self.groups[wid] = group
        return group

    def exists(self, wid: str) -> bool:
        """True for registered users (`@c.us` or `@lid`); groups are not users (§4b)."""
        return self.resolve(wid) is not None

    def canonical(self, wid: str) -> str:
        """A chat as the server files it: a group wid, or the user's `<number>@c.us` (a LID
        names the same account); '' for nobody."""
        if str(wid).endswith("@g.us"):
            return str(wid)
        acc = self.resolve(wid)
        return acc.wid if acc else ""

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
        acc = self.resolve(chat)
        return [acc] if acc else []

    def groups_of(self, phone: str) -> list[Group]:
        """Groups `phone` is a member of."""
        return [g for g in self.groups.values() if phone in g.members]
