"""`top --once`, `status`, `session list` and `outbox` against a real daemon fit 80 columns
when output is not a terminal, and `--wide` shows every column and every cell in full."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.helpers.waiting import eventually
from wasupctl import tables
from wasupctl.render import Layout

pytestmark = pytest.mark.chromium

CTL = [sys.executable, "-m", "wasupctl.app"]
LONG = "support-desk-berlin-night-shift-with-a-long-name"  # wider than NAME narrows to
QR_REASON = "waiting for the QR to be scanned"

COMMANDS: dict[str, tuple[tuple[str, ...], Layout]] = {
    "top": (("top", "--once"), tables.TOP),
    "status": (("status",), tables.SESSIONS),
    "session list": (("session", "list"), tables.SESSIONS),
    "outbox": (("outbox",), tables.OUTBOX),
}


def ctl(d: Any, *args: str, columns: str | None = "80") -> str:
    """wasupctl's stdout (not a terminal), with COLUMNS set unless `columns` is None."""
    env = {"PATH": "/usr/bin:/bin"} | ({"COLUMNS": columns} if columns else {})
    out = subprocess.run(
        [*CTL, "--socket", str(d.socket), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def header(out: str, layout: Layout) -> list[str]:
    """The headers of the table in `out` (the line that starts with its first column)."""
    line = next(ln for ln in out.splitlines() if ln.split()[:1] == [layout.headers[0]])
    return [h for h in line.split() if h != "\u2503"]


def test_tables_fit_80_columns_and_wide_shows_everything(
    daemon_factory: Any, sim_factory: Any
) -> None:
    """With COLUMNS=80 (and with no COLUMNS at all) no line of `top --once`, `status`,
    `session list` or `outbox` is longer than 80 and each session is one line, the reason
    last; `--wide` shows every column of each table and the long name and reason in full."""
    sim = sim_factory()
    d = daemon_factory(browser={"url": sim.url})
    d.call("session.create", name=LONG)
    d.call("session.create", name="idle", start=False)
    eventually(
        lambda: d.call("session.get", name=LONG, history=0)["reason"] == QR_REASON,
        90,
        "the QR on offer",
    )
    d.call("message.send", to="15550002222", text="hello\nthere " * 8, session=LONG)
    for what, (args, layout) in COMMANDS.items():
        for columns in ("80", None):
            out = ctl(d, *args, columns=columns)
            assert max(len(line) for line in out.splitlines()) <= 80, (what, out)
            assert header(out, layout)[-1] == layout.headers[-1], (what, out)
            if layout is not tables.OUTBOX:
                assert sum(1 for ln in out.splitlines() if ln.startswith(("idle ", LONG[:8]))) == 2
        wide = ctl(d, *args, "--wide")
        assert header(wide, layout) == list(layout.headers), (what, wide)
        assert "\u2026" not in wide, (what, wide)
        if layout is not tables.OUTBOX:
            assert LONG in wide and QR_REASON in wide, (what, wide)
    assert "hello there hello there" in ctl(d, "outbox", "--wide")
