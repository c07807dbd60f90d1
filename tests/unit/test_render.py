"""The CLI's wording: counts in the singular for one, PSS never a bare `-` for a live browser."""

from __future__ import annotations

from wasupctl.render import count, pss


def test_count_is_singular_for_one_only() -> None:
    """`1 session`, `0 sessions`, `2 sessions`; irregular plurals as given."""
    assert [count(n, "session") for n in (0, 1, 2)] == ["0 sessions", "1 session", "2 sessions"]
    assert count(1, "delivery", "deliveries") == "1 delivery"
    assert count(3, "delivery", "deliveries") == "3 deliveries"


def test_pss_is_the_figure_measuring_or_dash() -> None:
    """Sampled: the size; browser running, no sample yet: `measuring`; no browser: `-`."""
    assert pss({"pid": 42, "usage": {"pss_bytes": 300 << 20}}) == "300 MiB"
    assert pss({"pid": 42, "usage": None}) == "measuring"
    assert pss({"pid": None, "usage": None}) == "-"
