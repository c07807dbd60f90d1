"""Placement: each session in turn to the host with the most room; every host agrees."""

from __future__ import annotations

from wasupd.fleet.placement import Room, best, shares


def test_each_session_goes_to_the_host_with_most_room() -> None:
    """Memory decides first; a full host (by count) or a dead or draining one takes none."""
    rooms = [
        Room(host_id="a", free_slots=10, headroom_mib=3000),
        Room(host_id="b", free_slots=10, headroom_mib=2000),
        Room(host_id="c", free_slots=0, headroom_mib=9000),
        Room(host_id="d", free_slots=10, headroom_mib=9000, usable=False),
    ]
    assert shares(rooms, 6, 400) == {"a": 4, "b": 2, "c": 0, "d": 0}
    assert best(rooms, 400) == "a"


def test_no_room_leaves_sessions_unplaced() -> None:
    """Sessions beyond every host's room stay unowned; with no room at all, no best host."""
    rooms = [Room(host_id="a", free_slots=2, headroom_mib=10_000)]
    assert shares(rooms, 5, 400) == {"a": 2}
    assert best([Room(host_id="a", free_slots=5, headroom_mib=100)], 400) == ""


def test_ties_break_by_host_id_so_every_host_computes_the_same_plan() -> None:
    """Equal rooms alternate, starting with the smallest id, whatever the input order."""
    one = [Room(host_id=h, free_slots=5, headroom_mib=2000) for h in ("b", "a")]
    assert shares(one, 3, 400) == {"a": 2, "b": 1}
    assert shares(list(reversed(one)), 3, 400) == {"a": 2, "b": 1}
