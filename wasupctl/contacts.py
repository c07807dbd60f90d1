"""`contacts`: the people each session talked to, by number and LID."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from wasupctl import render
from wasupctl.common import call, emit_json, opts
from wasupd.addressing import display


def contacts(
    ctx: typer.Context,
    session: Annotated[
        str | None, typer.Option("--session", "-s", help="only this session")
    ] = None,
    limit: Annotated[int, typer.Option(help="how many of the most recent")] = 200,
    json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Contacts per session: number, LID, push name, first and last interaction, messages in
    and out (a number and a LID of one person are one contact)."""
    params: dict[str, Any] = {"limit": limit}
    if session:
        params["session"] = session
    rows = call(ctx, "contacts.list", **params)
    if json or opts(ctx).json:
        emit_json(rows)
        return
    table = [
        [
            display(r.get("pn")) or "(hidden)",
            r.get("lid"),
            r.get("push_name") or None,
            r["session"],
            render.when(r.get("first_at")),
            render.when(r.get("last_at")),
            r["msgs_in"],
            r["msgs_out"],
        ]
        for r in rows
    ]
    columns = ["NUMBER", "LID", "NAME", "SESSION", "FIRST", "LAST", "IN", "OUT"]
    render.table(None, columns, table)


def register(app: typer.Typer) -> None:
    """Add this command to the root app."""
    app.command()(contacts)
