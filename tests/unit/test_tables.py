"""The list tables fit the width: snapshots of `status`/`session list`, `top` and `outbox` at 80
and 120 columns and with `--wide`, and the fitting rules at every width in between.

The expected text is in tests/unit/snapshots/<table>-<width>.txt (trailing spaces stripped).
After an intended change of a table, regenerate them and review the diff:

    .venv/bin/python -m tests.unit.test_tables

(the test run itself never writes them).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len

from wasupctl import render, tables
from wasupctl.render import Column, Layout, drop, narrow
from wasupd.errors import InvalidArgument

SNAPSHOTS = Path(__file__).parent / "snapshots"
NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC

SESSIONS: list[dict[str, Any]] = [
    {
        "name": "alice",
        "state": "connected",
        "phone": "15550001111",
        "pid": 123456,
        "usage": {"pss_bytes": 312 << 20, "fds": 212, "processes": 9, "cpu_percent": 3.2},
        "storage": {"live_bytes": 48 << 20, "sealed_bytes": 21 << 20},
        "started_at": NOW - 3 * 86400 - 4 * 3600,
        "restarts": 0,
        "reason": "linked",
    },
    {
        "name": "support-desk-berlin-night-shift",
        "state": "backoff",
        "phone": None,
        "pid": None,
        "usage": None,
        "storage": {"sealed_bytes": 20 << 20},
        "started_at": None,
        "restarts": 4,
        "reason": "browser exited with status 1 (SIGSEGV in renderer); restarting in 32 s",
    },
    {
        "name": "carol",
        "state": "qr",
        "phone": "4915112345678",
        "pid": 98765,
        "usage": None,
        "storage": {},
        "started_at": NOW - 312,
        "restarts": 1,
        "reason": "waiting for the QR to be scanned",
    },
]

OUTBOX: list[dict[str, Any]] = [
    {
        "id": "m018bcfe3a1c0a1b2c3d4",
        "session": "alice",
        "chat_id": "15550002222@c.us",
        "state": "sent",
        "attempts": 1,
        "body": "Your order 1234 has shipped and will arrive on Tuesday",
    },
    {
        "id": "m018bcfe3a1c0deadbeef",
        "session": None,
        "from_spec": "auto",
        "chat_id": "120363025246125888@g.us",
        "state": "queued",
        "attempts": 0,
        "body": "Reminder:\nmeeting at 10",
        "wait_reason": "pacing: 20 per minute",
        "not_before": NOW + 40,
    },
    {
        "id": "m018bcfe3a1c0feedf00d",
        "session": "carol",
        "chat_id": "4915112345678@c.us",
        "state": "failed",
        "attempts": 5,
        "body": "hi",
        "last_error": "NotOnWhatsApp: +49 151 12345678 has no WhatsApp account",
    },
]

# name -> (layout, rows, title)
CASES: dict[str, Callable[[], tuple[Layout, list[list[Any]], str | None]]] = {
    "sessions": lambda: (tables.SESSIONS, tables.session_rows(SESSIONS, NOW), None),
    "top": lambda: (tables.TOP, tables.top_rows(SESSIONS, NOW), tables.top_title(SESSIONS, NOW)),
    "outbox": lambda: (tables.OUTBOX, tables.outbox_rows(OUTBOX), None),
}
WIDTHS = {"80": 80, "120": 120, "wide": 80}


def rendered(case: str, width: str) -> str:
    """The table `case` as printed at `width` (`wide`: with --wide), trailing spaces stripped."""
    layout, rows, title = CASES[case]()
    text = render.table_text(layout, rows, WIDTHS[width], wide=width == "wide", title=title)
    return "".join(line.rstrip() + "\n" for line in text.splitlines())


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Local time is UTC while a test runs, so clock columns read the same everywhere."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("case", list(CASES))
def test_table_matches_its_snapshot(case: str, width: str) -> None:
    """The table reads exactly as its snapshot file at 80 and 120 columns and with --wide."""
    expected = (SNAPSHOTS / f"{case}-{width}.txt").read_text()
    assert rendered(case, width) == expected


@pytest.mark.parametrize("case", list(CASES))
def test_every_line_fits_at_every_width_and_rows_stay_one_line(case: str) -> None:
    """From 80 to 200 columns no line is wider than the width, each row is one line, the
    reason is the last column, and the columns no step drops are always there; narrower
    than 80 (below what the tables are made for) lines still fit and rows stay one line."""
    layout, rows, title = CASES[case]()
    kept = [h for h in layout.headers if all(s.column != h or s.width for s in layout.steps)]
    for width in range(40, 201):
        lines = render.table_text(layout, rows, width, title=title).splitlines()
        assert max(cell_len(line) for line in lines) <= width, (width, lines)
        assert len(lines) == len(rows) + 2 + bool(title), (width, lines)
        if width >= 80:
            header = lines[1 if title else 0].split()
            assert header[-1] == layout.headers[-1], (width, header)
            assert all(h in header for h in kept), (width, header)


@pytest.mark.parametrize("case", list(CASES))
def test_columns_drop_in_the_layouts_order(case: str) -> None:
    """Narrowing the terminal one column at a time drops columns only in the layout's order:
    what is missing at any width is always the first few of its drop steps."""
    layout, rows, _ = CASES[case]()
    order = [s.column for s in layout.steps if s.width == 0]
    seen = 0
    for width in range(200, 79, -1):
        shown = render.fit_widths(layout, [[render.cell(v) for v in r] for r in rows], width)
        missing = [h for h in layout.headers if h not in shown]
        assert set(missing) == set(order[: len(missing)]), (width, missing)
        assert len(missing) >= seen
        seen = len(missing)
    assert seen > 0  # the data is wide enough that the test saw columns go


@pytest.mark.parametrize("case", list(CASES))
def test_wide_shows_every_column_and_every_cell_in_full(case: str) -> None:
    """--wide: every header, and every cell as written (only newlines collapsed), no ellipsis."""
    layout, rows, title = CASES[case]()
    text = render.table_text(layout, rows, 80, wide=True, title=title)
    header = text.splitlines()[1 if title else 0]
    assert header.split()[::2] == list(layout.headers)
    assert "\u2026" not in text
    for r in rows:
        assert all(render.cell(v) in text for v in r)


def test_a_reason_is_shown_as_written_not_read_as_markup() -> None:
    """Brackets and emoji codes in a reason are text, not rich markup."""
    s = {**SESSIONS[0], "reason": "[bold]boom[/bold] :smile: [red]"}
    text = render.table_text(tables.SESSIONS, tables.session_rows([s], NOW), 120)
    assert "[bold]boom[/bold] :smile: [red]" in text


def test_cells_are_one_line() -> None:
    """None is `-`; newlines and runs of spaces in a value become one space."""
    assert render.cell(None) == "-"
    assert render.cell("a\nb\r\n  c\t d") == "a b c d"
    assert render.cell(42) == "42"


def test_a_layout_that_names_a_missing_column_is_refused() -> None:
    """A step must name a column before the last one, and not narrow it below its header."""
    cols = (Column(header="NAME"), Column(header="REASON"))
    with pytest.raises(ValueError, match="no column 'PID'"):
        Layout(columns=cols, steps=(drop("PID"),))
    with pytest.raises(ValueError, match="no column 'REASON'"):
        Layout(columns=cols, steps=(drop("REASON"),))
    with pytest.raises(ValueError, match="narrower than the header"):
        Layout(columns=cols, steps=(narrow("NAME", 2),))


def test_width_is_columns_else_80_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a TTY (pytest captures stdout): COLUMNS if set, else 80; a COLUMNS that is not a
    positive number is a usage error saying what to set."""
    monkeypatch.delenv("COLUMNS", raising=False)
    assert not sys.stdout.isatty()
    assert render.terminal_width() == 80
    monkeypatch.setenv("COLUMNS", "132")
    assert render.terminal_width() == 132
    for bad in ("wide", "0", "-5"):
        monkeypatch.setenv("COLUMNS", bad)
        with pytest.raises(InvalidArgument, match=r"set it to a number of columns") as err:
            render.terminal_width()
        assert f"COLUMNS='{bad}'" in err.value.message


def test_status_fields_flow_onto_lines_that_fit() -> None:
    """The status header keeps its fields whole and two spaces apart, breaking between them;
    a field longer than the line is cut with an ellipsis; --wide keeps one line."""
    fields = ["wasupd 0.1.0", "pid 4242", "up 3d4h", "socket /run/wasupd/wasupd.sock", "fds 9/1024"]
    assert render.fields_lines(fields, 80) == ["  ".join(fields)]
    assert render.fields_lines(fields, 40) == [
        "wasupd 0.1.0  pid 4242  up 3d4h",
        "socket /run/wasupd/wasupd.sock",
        "fds 9/1024",
    ]
    assert render.fields_lines(["x" * 50], 20) == ["x" * 19 + "\u2026"]
    assert render.fields_lines(fields, 40, wide=True) == ["  ".join(fields)]


def test_docs_list_each_tables_columns_and_drop_order() -> None:
    """docs/cli.md's table of tables reads as the layouts are: columns in order, then steps."""
    doc = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for layout in (tables.SESSIONS, tables.TOP, tables.OUTBOX):
        steps = " ".join(s.column + (f"\u2192{s.width}" if s.width else "") for s in layout.steps)
        assert f"| {' '.join(layout.headers)} | {steps} |" in doc


def regenerate() -> None:
    """Write every snapshot from the current code (run as a module; see the docstring)."""
    os.environ["TZ"] = "UTC"
    time.tzset()
    SNAPSHOTS.mkdir(exist_ok=True)
    for case in CASES:
        for width in WIDTHS:
            path = SNAPSHOTS / f"{case}-{width}.txt"
            path.write_text(rendered(case, width))
            print(path)


if __name__ == "__main__":
    regenerate()
