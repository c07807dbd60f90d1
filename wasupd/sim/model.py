"""The simulator's world: accounts (phones), their linked devices, groups, and messages.

This is the "WhatsApp server" side: it issues QR refs and pairing codes, validates link
credentials kept in each browser profile, routes messages and acks, and records what every
phone received. `received(phone)` is the judge of "delivered exactly once" tests: every
delivery is recorded, duplicates included.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

CROCKFORD = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"  # the reference's alphabet (no 0, I, O, U)


def new_ref() -> str:
    """A server ref like real ones: `2@` + base64, about 82 characters."""
    return "2@" + base64.b64encode(secrets.token_bytes(60)).decode()


def new_pairing_code() -> str:
    """8 characters from 5 random bytes, Crockford-style as Baileys does."""
    n = int.from_bytes(secrets.token_bytes(5), "big")
    out = []
    for _ in range(8):
        out.append(CROCKFORD[n & 31])
        n >>= 5
    return "".join(out)


@dataclass
class Device:
    """One linked companion device (a browser profile) of an account."""

    device_id: str
    token: str
    linked_at: float
    platform: str = "web"


@dataclass
class Account:
    """One simulated phone number."""

    phone: str
    name: str = ""
    devices: dict[str, Device] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)

    @property
    def wid(self) -> str:
        """`<digits>@c.us`."""
        return f"{self.phone}@c.us"


@dataclass
class World:
    """Every account and group the simulated server knows."""

    accounts: dict[str, Account] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def add_account(self, phone: str, name: str = "") -> Account:
        """Register a number on (simulated) WhatsApp."""
        acc = self.accounts.get(phone) or Account(phone, name)
        acc.name = name or acc.name
        self.accounts[phone] = acc
        return acc

    def exists(self, wid: str) -> bool:
        """True for registered users and known groups."""
        user, _, server = wid.partition("@")
        if server == "g.us":
            return wid in self.groups
        return server in ("c.us", "s.whatsapp.net") and user in self.accounts

    def link(self, phone: str) -> Device:
        """A new linked device for `phone` with fresh credentials."""
        acc = self.accounts[phone]
        dev = Device(secrets.token_hex(8), secrets.token_urlsafe(24), time.time())
        acc.devices[dev.device_id] = dev
        return dev

    def check_creds(self, creds: dict[str, Any] | None) -> Account | None:
        """The account whose device matches `creds`, or None (unknown, revoked or forged)."""
        if not isinstance(creds, dict):
            return None
        acc = self.accounts.get(str(creds.get("phone", "")))
        if acc is None:
            return None
        dev = acc.devices.get(str(creds.get("device_id", "")))
        if dev is None or not secrets.compare_digest(dev.token, str(creds.get("token", ""))):
            return None
        return acc

    def recipients(self, to: str) -> list[Account]:
        """Accounts a message to `to` reaches."""
        user, _, server = to.partition("@")
        if server == "g.us":
            return [self.accounts[m] for m in self.groups.get(to, []) if m in self.accounts]
        acc = self.accounts.get(user)
        return [acc] if acc else []
