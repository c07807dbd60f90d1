"""Who a message is for or from: phone numbers and WhatsApp ids, parsed and formatted once.

WhatsApp names a person by phone number (PN, `<digits>@c.us`) or, for accounts moved to the
privacy identity, by LID (`<digits>@lid`, which does not reveal the number); groups are
`<id>@g.us`. The same person can appear under both; `Peer` holds what is known of the two.
Everything here is pure and is the only place that knows these formats (docs/driver.md,
"Addressing").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wasupd.errors import InvalidArgument

USER_SERVER = "c.us"  # a phone number's id
LID_SERVER = "lid"  # a LID's id
GROUP_SERVER = "g.us"  # a group's id
_PHONE_SEPARATORS = re.compile(r"[\s\-().+]")
_ID_USER = {USER_SERVER: r"[0-9]{7,15}", LID_SERVER: r"[0-9]{1,24}", GROUP_SERVER: r"[0-9-]+"}
RECIPIENT_HELP = (
    "give a phone number with country code (e.g. +49 151 2345678) or a chat id"
    " (<digits>@c.us, <digits>@lid, <id>@g.us)"
)


def normalize_phone(raw: str) -> str:
    """Digits with country code; accepts '+', spaces, dashes, dots and parentheses;
    `InvalidArgument` otherwise."""
    digits = _PHONE_SEPARATORS.sub("", raw)
    if not digits.isdigit() or not 7 <= len(digits) <= 15:
        raise InvalidArgument(
            f"invalid phone number {raw!r}: give the international number with country code,"
            " e.g. +49 151 23456789",
            phone=raw,
        )
    return digits


def server_of(chat_id: str) -> str:
    """The part after `@` ('' when there is none)."""
    return chat_id.partition("@")[2]


def is_group(chat_id: str) -> bool:
    """True for a group id."""
    return server_of(chat_id) == GROUP_SERVER


def is_lid(chat_id: str) -> bool:
    """True for a LID (`<digits>@lid`)."""
    return server_of(chat_id) == LID_SERVER


def is_pn(chat_id: str) -> bool:
    """True for a phone number's id (`<digits>@c.us`)."""
    return server_of(chat_id) == USER_SERVER


def pn_id(digits: str) -> str:
    """The id of a phone number given as digits."""
    return f"{digits}@{USER_SERVER}"


def parse_recipient(to: str) -> str:
    """The chat id for `to`: a phone number (normalised to `<digits>@c.us`) or a chat id
    (`<digits>@c.us`, `<digits>@lid`, `<id>@g.us`); `InvalidArgument` naming the forms else."""
    to = to.strip()
    if "@" not in to:
        try:
            return pn_id(normalize_phone(to))
        except InvalidArgument:
            raise InvalidArgument(f"invalid recipient {to!r}: {RECIPIENT_HELP}", to=to) from None
    user, _, server = to.partition("@")
    pattern = _ID_USER.get(server)
    if pattern is None or not re.fullmatch(pattern, user):
        raise InvalidArgument(f"unsupported chat id {to!r}: {RECIPIENT_HELP}", to=to)
    return to


def display(chat_id: str | None) -> str:
    """How people read an id: `+<digits>` for a phone number, the id itself otherwise."""
    if not chat_id:
        return ""
    return f"+{chat_id.partition('@')[0]}" if is_pn(chat_id) else chat_id


@dataclass(frozen=True, slots=True)
class Peer:
    """One person as far as WhatsApp Web told us: the phone number's id and/or the LID.

    Either may be None: the number is hidden or not learnt yet, or the account has no LID
    (not migrated)."""

    pn: str | None = None
    lid: str | None = None

    @classmethod
    def of(cls, chat_id: str | None, *, pn: str | None = None, lid: str | None = None) -> Peer:
        """The peer named by `chat_id` (a PN or LID id; anything else adds nothing), completed
        with what else is known. Ids of the wrong kind are dropped, never mixed up."""
        pn = pn if pn and is_pn(pn) else None
        lid = lid if lid and is_lid(lid) else None
        if chat_id and is_pn(chat_id):
            pn = chat_id
        elif chat_id and is_lid(chat_id):
            lid = chat_id
        return cls(pn, lid)

    @property
    def known(self) -> bool:
        """True when at least one id is known."""
        return bool(self.pn or self.lid)

    @property
    def ids(self) -> tuple[str, ...]:
        """The known ids, phone number first."""
        return tuple(i for i in (self.pn, self.lid) if i)

    def alternate(self, chat_id: str) -> str | None:
        """The other id of the same person (the LID for its PN and the reverse), if known."""
        if chat_id == self.pn:
            return self.lid
        return self.pn if chat_id == self.lid else None
