"""Rendering for people: tables that fit the terminal, durations, sizes, and the QR code.

Every list `wasupctl` prints as a table (`status`, `session list`, `top`, `outbox`) goes through
one mechanism here: a `Layout` names its columns, the one that takes the rest of the line (the
reason, always last, cut with an ellipsis) and the fixed order in which the others drop or
narrow; `fit` applies those steps until the table fits the width, one line per row. `wide`
shows every column at its full width instead.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wasupd.errors import InvalidArgument

if TYPE_CHECKING:
    from rich.table import Table

# Half-block glyphs: (top dark, bottom dark) -> character.
_HALF = {
    (False, False): " ",
    (True, False): "\u2580",
    (False, True): "\u2584",
    (True, True): "\u2588",
}
# Black ink on bright white, so the code scans whatever the terminal's colour theme.
_ON = "\x1b[30;107m"
_OFF = "\x1b[0m"


def qr_matrix(payload: str, border: int = 2) -> list[list[bool]]:
    """The QR module matrix of `payload` (True = dark), with a quiet zone of `border` modules."""
    import segno

    code = segno.make_qr(payload, error="l")
    return [[bool(v) for v in row] for row in code.matrix_iter(scale=1, border=border)]


def qr_text(payload: str, *, color: bool | None = None, border: int = 2) -> str:
    """The QR as half-block text: two module rows per line, fits 80 columns for WhatsApp payloads.

    With `color` (default: stdout is a TTY) each line is drawn black-on-white so it scans on
    dark terminals too; without it, the glyphs are the dark modules (for light backgrounds).
    """
    if color is None:
        color = sys.stdout.isatty()
    rows = qr_matrix(payload, border)
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    lines = []
    for top, bottom in zip(rows[0::2], rows[1::2], strict=True):
        line = "".join(_HALF[(t, b)] for t, b in zip(top, bottom, strict=True))
        lines.append(f"{_ON}{line}{_OFF}" if color else line)
    return "\n".join(lines)


def qr_from_text(text: str) -> list[list[bool]]:
    """Parse `qr_text` output (without colour) back into a module matrix (used by tests)."""
    inverse = {v: k for k, v in _HALF.items()}
    rows: list[list[bool]] = []
    for line in text.splitlines():
        pairs = [inverse[ch] for ch in line]
        rows.append([t for t, _ in pairs])
        rows.append([b for _, b in pairs])
    return rows


def duration(seconds: float | None) -> str:
    """`3d4h`, `5m12s`, `-` for None."""
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    if d:
        return f"{d}d{h}h"
    if h:
        return f"{h}h{m}m"
    return f"{m}m{sec}s" if m else f"{sec}s"


def size(n: int | None) -> str:
    """Bytes as MiB/KiB for tables."""
    if n is None:
        return "-"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.0f} MiB"
    return f"{n / 1024:.0f} KiB"


def count(n: int, noun: str, plural: str = "") -> str:
    """`1 session`, `2 sessions`, `0 sessions`; `plural` for nouns not made with -s."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def pss(session: dict[str, Any]) -> str:
    """A session's memory (PSS) for tables: the figure once the daemon has sampled it,
    `measuring` while its browser runs but the first sample is still to come, `-` when it has
    no browser."""
    usage = session.get("usage")
    if usage:
        return size(usage.get("pss_bytes"))
    return "measuring" if session.get("pid") else "-"


def when(ts: float | None) -> str:
    """A unix time as local `YYYY-MM-DD HH:MM:SS`."""
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a rich table on stdout."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, show_edge=False, header_style="bold")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*("-" if v is None else str(v) for v in r))
    Console().print(t)


STATE_STYLE = {
    "connected": "green",
    "qr": "yellow",
    "syncing": "cyan",
    "starting": "cyan",
    "degraded": "yellow",
    "backoff": "magenta",
    "stopping": "cyan",
    "stopped": "dim",
    "logged_out": "red",
    "failed": "bold red",
}


def state(s: str) -> str:
    """A state with rich colour markup."""
    style = STATE_STYLE.get(s, "")
    return f"[{style}]{s}[/{style}]" if style else s


# -- tables that fit -------------------------------------------------------------------------

DEFAULT_WIDTH = 80  # when stdout is not a terminal and COLUMNS is not set
FLEX_MIN = 20  # the narrowest the last column gets before another column drops


@dataclass(frozen=True, slots=True, kw_only=True)
class Column:
    """One column: its header, at most `cap` cells wide unless `wide` (None: as wide as its
    longest cell), and `style(value)` for the cell's rich style (e.g. a state's colour)."""

    header: str
    cap: int | None = None
    style: Callable[[str], str] | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One move of a layout's fixed order: narrow `column` to `width` cells (0: drop it)."""

    column: str
    width: int


def drop(column: str) -> Step:
    """The step that removes `column`."""
    return Step(column, 0)


def narrow(column: str, width: int) -> Step:
    """The step that cuts `column`'s cells to `width` (with an ellipsis)."""
    return Step(column, width)


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """A table's columns in order, the last one taking the rest of the line, and the `steps`
    (drop or narrow, applied in this order) that make it fit a narrower terminal.

    Columns no step drops are always shown. The last column shrinks to the room left, but not
    below `flex_min` (or its own width, when less) while a step remains.
    """

    columns: tuple[Column, ...]
    steps: tuple[Step, ...] = ()
    flex_min: int = FLEX_MIN

    def __post_init__(self) -> None:
        for step in self.steps:
            if step.column not in self.headers[:-1]:
                raise ValueError(f"step {step}: no column {step.column!r} before the last one")
            if 0 < step.width < len(step.column):
                raise ValueError(f"step {step}: narrower than the header {step.column!r}")

    @property
    def headers(self) -> tuple[str, ...]:
        """The column headers in order."""
        return tuple(c.header for c in self.columns)


def terminal_width() -> int:
    """The width tables fit: the terminal's when stdout is one (`COLUMNS` overrides it, as
    everywhere), else `COLUMNS` if set, else 80. A `COLUMNS` that is not a positive whole
    number is an `InvalidArgument` saying so."""
    env = os.environ.get("COLUMNS", "")
    if env:
        if not env.isdigit() or int(env) == 0:
            raise InvalidArgument(
                f"COLUMNS={env!r} is not a width: set it to a number of columns (e.g. COLUMNS=120)"
                " or unset it"
            )
        return int(env)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    return DEFAULT_WIDTH


def cell(value: Any) -> str:
    """A value as one line of table text: `-` for None, whitespace (newlines too) collapsed."""
    return "-" if value is None else " ".join(str(value).split())


def fit_widths(
    layout: Layout, rows: Sequence[Sequence[str]], width: int, *, wide: bool = False
) -> dict[str, int]:
    """The columns to show, in order, each with its width in cells.

    `wide`: every column as wide as its widest cell. Otherwise the columns start at that
    width (cut to `cap`), and the layout's steps apply in order until the last column gets
    at least `flex_min` of the room left (or all it needs); it then takes exactly that room.
    """
    from rich.cells import cell_len

    natural = {
        c.header: max([cell_len(c.header), *(cell_len(r[i]) for r in rows)])
        for i, c in enumerate(layout.columns)
    }
    if wide:
        return natural
    widths = {
        c.header: min(natural[c.header], c.cap) if c.cap else natural[c.header]
        for c in layout.columns
    }
    last = layout.headers[-1]
    steps = list(layout.steps)
    while True:
        room = width - table_width({h: w for h, w in widths.items() if h != last}, extra=1)
        if room >= min(widths[last], layout.flex_min) or not steps:
            widths[last] = max(min(widths[last], room), 1)
            return widths
        step = steps.pop(0)
        if step.width == 0:
            del widths[step.column]
        else:
            widths[step.column] = min(widths[step.column], step.width)


def table_width(widths: dict[str, int], extra: int = 0) -> int:
    """The cells a table of these column widths takes (and `extra` more columns of width 0):
    one space each side of a column separator, no outer edge."""
    n = len(widths) + extra
    return sum(widths.values()) + max(0, 3 * n - 3)


def fit(
    layout: Layout,
    rows: Sequence[Sequence[Any]],
    width: int,
    *,
    wide: bool = False,
    title: str | None = None,
) -> Table:
    """`rows` (one value per column of `layout`) as a rich table that fits `width`, or shows
    everything with `wide`: one line per row, cut cells end in an ellipsis."""
    from rich.table import Table
    from rich.text import Text

    cells = [[cell(v) for v in r] for r in rows]
    widths = fit_widths(layout, cells, width, wide=wide)
    t = Table(title=title, show_edge=False, pad_edge=False, header_style="bold")
    shown = [(i, c) for i, c in enumerate(layout.columns) if c.header in widths]
    for _, c in shown:
        t.add_column(c.header, width=widths[c.header], no_wrap=True, overflow="ellipsis")
    for r in cells:
        t.add_row(*(Text(r[i], style=c.style(r[i]) if c.style else "") for i, c in shown))
    return t


def print_table(
    layout: Layout,
    rows: Sequence[Sequence[Any]],
    width: int,
    *,
    wide: bool = False,
    title: str | None = None,
) -> None:
    """Print `fit(...)` on stdout (with `wide`, as long as its lines are)."""
    show(fit(layout, rows, width, wide=wide, title=title), width, wide=wide)


def show(table: Table, width: int, *, wide: bool = False) -> None:
    """Print a table made by `fit` on stdout, `width` wide or (`wide`) as wide as it is."""
    from rich.console import Console

    Console(width=_console_width(table, width, wide)).print(table)


def table_text(
    layout: Layout,
    rows: Sequence[Sequence[Any]],
    width: int,
    *,
    wide: bool = False,
    title: str | None = None,
) -> str:
    """What `print_table` prints, as plain text without colour (for tests)."""
    from io import StringIO

    from rich.console import Console

    table = fit(layout, rows, width, wide=wide, title=title)
    out = StringIO()
    Console(file=out, width=_console_width(table, width, wide), color_system=None).print(table)
    return out.getvalue()


def _console_width(table: Table, width: int, wide: bool) -> int:
    # A wide table must not be squeezed back into the terminal by rich: give it its own width.
    if not wide:
        return width
    return max(width, table_width({str(c.header): c.width or 0 for c in table.columns}))


def fields_lines(fields: Sequence[str], width: int, *, wide: bool = False) -> list[str]:
    """`fields` two spaces apart, on as many lines as `width` needs (a field is never split;
    one longer than the line is cut with an ellipsis). `wide`: one line."""
    from rich.cells import cell_len, set_cell_size

    if wide:
        return ["  ".join(fields)]
    lines: list[str] = []
    for text in fields:
        f = text if cell_len(text) <= width else set_cell_size(text, max(0, width - 1)) + "\u2026"
        if lines and cell_len(lines[-1]) + 2 + cell_len(f) <= width:
            lines[-1] += "  " + f
        else:
            lines.append(f)
    return lines
