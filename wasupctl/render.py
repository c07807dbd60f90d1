"""Rendering for people: tables, durations, sizes, and the QR code in the terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

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
