"""`optout list | add | rm | import FILE`: the suppression list."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from wasupctl import render
from wasupctl.common import call, die, emit_json, opts
from wasupd.errors import EXIT_USAGE

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """Every contact on the suppression list."""
    rows, after = [], ""
    while page := call(ctx, "optout.list", after=after, limit=5000):
        rows += page
        after = page[-1]["chat_id"]
    if opts(ctx).json:
        emit_json(rows)
        return
    render.table(
        None,
        ["contact", "source", "since"],
        [[r["chat_id"], r["source"], render.when(r["created_at"])] for r in rows],
    )


@app.command()
def add(
    ctx: typer.Context, contacts: Annotated[list[str], typer.Argument(help="numbers or chat ids")]
) -> None:
    """Suppress contacts; their queued campaign messages are cancelled."""
    _print(ctx, call(ctx, "optout.add", contacts=contacts))


@app.command()
def rm(
    ctx: typer.Context, contacts: Annotated[list[str], typer.Argument(help="numbers or chat ids")]
) -> None:
    """Take contacts off the suppression list."""
    _print(ctx, call(ctx, "optout.rm", contacts=contacts))


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[
        str, typer.Argument(help="one number per line, or a CSV with a phone column; - for stdin")
    ],
) -> None:
    """Suppress every contact of a file."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        die(f"cannot read {file}: {exc}", EXIT_USAGE)
    lines = [ln.split(",")[0].strip() for ln in text.splitlines() if ln.strip()]
    if lines and lines[0].lower() == "phone":
        lines = lines[1:]
    added = 0
    for i in range(0, len(lines), 1000):
        added += len(call(ctx, "optout.add", contacts=lines[i : i + 1000])["added"])
    print(f"{added} contact(s) added, {len(lines) - added} already on the list")


def _print(ctx: typer.Context, data: dict[str, list[str]]) -> None:
    if opts(ctx).json:
        emit_json(data)
        return
    for key, values in data.items():
        for v in values:
            print(f"{key}: {v}")
