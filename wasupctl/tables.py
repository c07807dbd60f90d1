"""The tables `wasupctl` prints for lists: their columns, what drops first, and their rows.

Each `Layout` is the contract docs/cli.md describes: the columns left to right, the reason
last (it takes the rest of the line and is cut with an ellipsis), and the fixed order in which
the other columns drop or narrow when the terminal is too narrow (`render.fit`). The row
builders take the daemon's JSON and the time, so the tests render fixed data.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from wasupctl import render
from wasupctl.render import Column, Layout, drop, narrow


def _state_style(value: str) -> str:
    return render.STATE_STYLE.get(value, "")


NAME = Column(header="NAME")
STATE = Column(header="STATE", style=_state_style)
REASON = Column(header="REASON")

# `status` and `session list`.
SESSIONS = Layout(
    columns=(
        NAME,
        STATE,
        Column(header="PHONE"),
        Column(header="PID"),
        Column(header="PSS"),
        Column(header="UPTIME"),
        Column(header="RESTARTS"),
        REASON,
    ),
    steps=(
        drop("PHONE"),
        drop("RESTARTS"),
        drop("UPTIME"),
        narrow("NAME", 24),
        drop("PID"),
        drop("PSS"),
        narrow("NAME", 12),
    ),
)

# `status` and `session list` in a fleet: the host that runs each session, after its state.
FLEET_SESSIONS = Layout(
    columns=(*SESSIONS.columns[:2], Column(header="HOST"), *SESSIONS.columns[2:]),
    steps=(*SESSIONS.steps, narrow("HOST", 12)),
)

TOP = Layout(
    columns=(
        NAME,
        STATE,
        Column(header="PID"),
        Column(header="PSS"),
        Column(header="FDS"),
        Column(header="PROCS"),
        Column(header="CPU%"),
        Column(header="LIVE"),
        Column(header="SEALED"),
        Column(header="UPTIME"),
        Column(header="RESTARTS"),
        REASON,
    ),
    steps=(
        drop("SEALED"),
        drop("LIVE"),
        drop("PROCS"),
        drop("UPTIME"),
        drop("RESTARTS"),
        drop("FDS"),
        narrow("NAME", 24),
        drop("PID"),
        drop("CPU%"),
        drop("PSS"),
        narrow("NAME", 12),
    ),
)

OUTBOX = Layout(
    columns=(
        Column(header="ID"),
        Column(header="SESSION"),
        Column(header="TO"),
        Column(header="STATE"),
        Column(header="TRIES"),
        Column(header="TEXT", cap=30),
        Column(header="WAITING/ERROR"),
    ),
    steps=(
        narrow("TEXT", 16),
        drop("TRIES"),
        drop("SESSION"),
        narrow("TO", 20),
        drop("TEXT"),
        narrow("TO", 12),
    ),
)


def _uptime(s: dict[str, Any], now: float) -> str:
    started = s.get("started_at")
    return render.duration(now - started) if started else "-"


def session_rows(sessions: Sequence[dict[str, Any]], now: float) -> list[list[Any]]:
    """`SESSIONS` rows of `session.list` entries, uptimes as of `now`."""
    return [
        [
            s["name"],
            s["state"],
            s.get("phone") or "-",
            s.get("pid"),
            render.pss(s),
            _uptime(s, now),
            s.get("restarts", 0),
            s.get("reason") or "",
        ]
        for s in sessions
    ]


def fleet_session_rows(sessions: Sequence[dict[str, Any]], now: float) -> list[list[Any]]:
    """`FLEET_SESSIONS` rows: `session_rows` with the host ('-' for none) after the state."""
    rows = session_rows(sessions, now)
    for row, s in zip(rows, sessions, strict=True):
        row.insert(2, s.get("host") or "-")
    return rows


def top_rows(sessions: Sequence[dict[str, Any]], now: float) -> list[list[Any]]:
    """`TOP` rows of `session.list` entries, uptimes as of `now`."""
    rows = []
    for s in sessions:
        u = s.get("usage") or {}
        st = s.get("storage") or {}
        rows.append(
            [
                s["name"],
                s["state"],
                s.get("pid") or "-",
                render.pss(s),
                u.get("fds", "-"),
                u.get("processes", "-"),
                f"{u['cpu_percent']:.0f}" if u else "-",
                render.size(st.get("live_bytes")),
                render.size(st.get("sealed_bytes")),
                _uptime(s, now),
                s.get("restarts", 0),
                s.get("reason") or "",
            ]
        )
    return rows


def top_title(sessions: Sequence[dict[str, Any]], now: float) -> str:
    """`wasupd - 3 sessions - 14:02:07` (local time of `now`)."""
    clock = time.strftime("%H:%M:%S", time.localtime(now))
    return f"wasupd - {render.count(len(sessions), 'session')} - {clock}"


def outbox_rows(messages: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """`OUTBOX` rows of `outbox.list` entries: why and until when a queued one waits, or the
    last error."""
    rows = []
    for r in messages:
        waiting = r.get("wait_reason") or ""
        if waiting and r.get("not_before"):
            waiting += f" until {render.when(r['not_before'])}"
        rows.append(
            [
                r["id"],
                r.get("session") or r.get("from_spec"),
                r["chat_id"],
                r["state"],
                r.get("attempts", 0),
                f"[{r['media_kind']}] {r['body']}".strip() if r.get("media_kind") else r["body"],
                waiting or r.get("last_error") or "",
            ]
        )
    return rows
