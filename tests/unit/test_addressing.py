"""The addressing rules: phone numbers, `@c.us`, `@lid` and `@g.us` ids, and what a Peer holds."""

from __future__ import annotations

import pytest

from wasupd.addressing import (
    Peer,
    display,
    is_group,
    is_lid,
    is_pn,
    normalize_phone,
    parse_recipient,
)
from wasupd.errors import InvalidArgument


def test_phone_numbers_are_normalised_to_digits() -> None:
    """+, spaces, dashes, dots and parentheses go; too short, too long or letters are refused."""
    assert normalize_phone("+49 (151) 234-56.78") == "491512345678"
    for bad in ("+12", "1234567890123456", "49 151 abc"):
        with pytest.raises(InvalidArgument, match="country code"):
            normalize_phone(bad)


def test_recipients_are_numbers_or_the_three_id_forms() -> None:
    """A number becomes its `@c.us` id; `@c.us`, `@lid` and `@g.us` ids pass unchanged."""
    assert parse_recipient(" +1 555 000 2222 ") == "15550002222@c.us"
    for chat in ("15550002222@c.us", "201234567890123@lid", "120363040000000000@g.us"):
        assert parse_recipient(chat) == chat
    assert is_pn("1@c.us") and is_lid("1@lid") and is_group("1-2@g.us")
    assert not is_pn("1@lid") and not is_lid("1@c.us")


@pytest.mark.parametrize(
    "bad", ["bob", "@lid", "12ab@lid", "123@s.whatsapp.net", "1555@c.us", "x@g.us", "1@newsletter"]
)
def test_bad_recipients_name_the_accepted_forms(bad: str) -> None:
    """Each refusal says what to give instead."""
    with pytest.raises(InvalidArgument, match=r"@lid") as info:
        parse_recipient(bad)
    assert "country code" in info.value.message


def test_a_peer_keeps_each_id_in_its_place() -> None:
    """A LID never lands in the number's place or the reverse; `alternate` gives the other id."""
    peer = Peer.of("1555@c.us", lid="99@lid")
    assert peer == Peer("1555@c.us", "99@lid") and peer.ids == ("1555@c.us", "99@lid")
    assert peer.alternate("1555@c.us") == "99@lid" and peer.alternate("99@lid") == "1555@c.us"
    assert Peer.of("99@lid", pn="99@lid", lid="1555@c.us") == Peer(None, "99@lid")
    assert not Peer.of("120363@g.us").known and Peer.of(None).alternate("x") is None


def test_display_shows_numbers_with_a_plus() -> None:
    """People read numbers as +digits; LIDs and groups stay ids."""
    assert display("4915123@c.us") == "+4915123"
    assert display("99@lid") == "99@lid" and display(None) == ""
