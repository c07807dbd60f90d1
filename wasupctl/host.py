"""`wasupctl host ...`: the hosts of a fleet on one PostgreSQL (list, drain)."""

from __future__ import annotations

from typing import Annotated

import typer

from wasupctl import render
from wasupctl.common import call, emit_json, opts

app = typer.Typer(no_args_is_help=True)

Host = Annotated[str, typer.Argument(help="host id (as `host list` shows it)")]


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """Every host: capacity, sessions held, lease health, version."""
    data = call(ctx, "host.list")
    if opts(ctx).json:
        emit_json(data)
        return
    rows = [
        [
            h["host"],
            f"{h['sessions']}/{h['max_sessions']}",
            f"{h['headroom_mib']} MiB",
            h["lease"] + (" (draining)" if h["draining"] else ""),
            f"{h['heartbeat_age']:g} s",
            h["version"],
        ]
        for h in data
    ]
    render.table(None, ["HOST", "SESSIONS", "HEADROOM", "LEASE", "HEARTBEAT", "VERSION"], rows)


@app.command()
def drain(
    ctx: typer.Context,
    host: Host,
    undo: Annotated[bool, typer.Option("--undo", help="put the host back in service")] = False,
) -> None:
    """Move every session away from HOST (for maintenance); --undo ends the drain."""
    data = call(ctx, "host.drain", host=host, undo=undo)
    if opts(ctx).json:
        emit_json(data)
    else:
        print(f"{host}: {'draining' if data['draining'] else 'in service'}")
