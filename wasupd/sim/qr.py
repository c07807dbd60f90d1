"""QR refs, QR payloads and pairing codes in the shapes real WhatsApp uses.

§ numbers refer to docs/whatsapp-web.md (§1 and §3 here).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

import segno

CROCKFORD = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"  # §3: Baileys' alphabet (no 0, I, O, U)
KEY_NAMES = ("noise", "identity", "adv")


def new_ref() -> str:
    """A server ref like real ones: `2@` + base64 of 58 bytes, 82 characters (§1a)."""
    return "2@" + base64.b64encode(secrets.token_bytes(58)).decode()


def new_pairing_code() -> str:
    """8 characters from 5 random bytes, most significant bits first (§3, bytesToCrockford)."""
    value = int.from_bytes(secrets.token_bytes(5), "big")
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(35, -1, -5))


def normalize_code(code: str) -> str:
    """What the phone user typed (`abcd-efgh`, spaces) -> `ABCDEFGH`."""
    return "".join(ch for ch in str(code).upper() if ch.isalnum())


def is_key(value: str) -> bool:
    """A 44-character base64 encoding of 32 bytes (§1a)."""
    try:
        return len(value) == 44 and len(base64.b64decode(value, validate=True)) == 32
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Payload:
    """`ref,noise,identity,adv[,platform]`: 5 parts as wwebjs builds it, 4 as wa-js (§1a)."""

    ref: str
    noise: str
    identity: str
    adv: str
    platform: str = ""

    def __str__(self) -> str:
        parts = [self.ref, self.noise, self.identity, self.adv]
        return ",".join([*parts, self.platform] if self.platform else parts)

    @classmethod
    def parse(cls, text: str) -> Payload:
        """The payload a phone read from a QR; ValueError naming what is wrong."""
        parts = str(text).strip().split(",")
        if len(parts) not in (4, 5):
            raise ValueError(
                f"a WhatsApp QR has 4 or 5 comma-separated parts, this has {len(parts)}"
            )
        if not parts[0].startswith("2@"):
            raise ValueError("the QR's first part is not a WhatsApp ref (2@...)")
        for name, value in zip(KEY_NAMES, parts[1:4], strict=True):
            if not is_key(value):
                raise ValueError(f"the QR's {name} key is not 44-character base64 of 32 bytes")
        return cls(*parts)


def matrix(text: str) -> list[str]:
    """The QR modules of `text`, one string of 0/1 per row, without the quiet zone."""
    # A fixed mask: scoring all 8 costs ~8x the time, and any mask decodes the same.
    code = segno.make_qr(text, error="m", boost_error=False, mode="byte", mask=0)
    return ["".join("1" if cell else "0" for cell in row) for row in code.matrix]
