"""`status`, `health`, `events`, `metrics`, `top`, `reload`: the daemon as a whole."""

from __future__ import annotations

import signal
import sys
import time
from typing import Annotated, Any

import typer

from wasupctl import render, tables
from wasupctl.common import Wide, call, emit_json, emit_ndjson, fail, guard, opts, table_width

HEALTH_EXIT = {"OK": 0, "WARNING": 1, "CRITICAL": 2}


def status(ctx: typer.Context, wide: Wide = False) -> None:
    """Daemon version, uptime and a table of sessions."""
    data = call(ctx, "daemon.status")
    if opts(ctx).json:
        emit_json(data)
        return
    width = table_width()
    fields = [
        f"wasupd {data['version']}",
        f"pid {data['pid']}",
        f"up {render.duration(data['uptime'])}",
        f"socket {data['socket']}",
        f"fds {data['fds']}/{data['fd_limit']}",
    ]
    print("\n".join(render.fields_lines(fields, width, wide=wide)))
    sessions_table(data["sessions"], width, wide)


def sessions_table(sessions: list[dict[str, Any]], width: int, wide: bool) -> None:
    """The sessions table shared by `status` and `session list`, fitting `width`."""
    if not sessions:
        print("no sessions (create one: wasupctl session create NAME)")
        return
    if any("host" in s for s in sessions):  # a fleet: which host runs each one
        rows = tables.fleet_session_rows(sessions, time.time())
        render.print_table(tables.FLEET_SESSIONS, rows, width, wide=wide)
        return
    render.print_table(
        tables.SESSIONS, tables.session_rows(sessions, time.time()), width, wide=wide
    )


def health(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="one session (default: all)")] = None,
) -> None:
    """Health check: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (monitoring-plugin convention)."""
    from wasupd.errors import WasupError
    from wasupd.rpc.client import Client

    o = opts(ctx)
    try:
        with Client(o.socket, timeout=o.timeout) as client:
            data = (
                client.call("daemon.health", session=name) if name else client.call("daemon.health")
            )
    except WasupError as exc:
        if exc.exit_status == 4:  # unknown session: a usage problem, not a health verdict
            fail(exc)
        print(f"UNKNOWN - {exc.message}")
        raise typer.Exit(3) from None
    if o.json:
        emit_json(data)
    else:
        bad = [c for c in data["sessions"] if c["status"] != "OK"]
        detail = "; ".join(f"{c['session']} {c['state']}" for c in bad) or (
            f"{render.count(len(data['sessions']), 'session')} OK"
        )
        print(f"{data['status']} - {detail}")
    raise typer.Exit(HEALTH_EXIT.get(data["status"], 3))


def events(
    ctx: typer.Context,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep streaming")] = False,
    session: Annotated[list[str] | None, typer.Option("--session", "-s", help="only these")] = None,
    type_: Annotated[
        list[str] | None, typer.Option("--type", "-t", help="only these types")
    ] = None,
) -> None:
    """State changes, QR rotations and messages as they happen (NDJSON with --json)."""
    from wasupd.rpc.client import Client

    o = opts(ctx)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # end quietly when the reader goes away
    with Client(o.socket, timeout=o.timeout) as client:
        stream = client.stream("events.subscribe", types=type_ or [], sessions=session or [])
        guard(lambda: _pump(stream, o.json, follow))


def _pump(stream: Any, as_json: bool, follow: bool) -> None:
    if not follow:
        return
    for event in stream:
        if as_json:
            emit_ndjson(event)
        else:
            print(_event_line(event), flush=True)


def _event_line(e: dict[str, Any]) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(e.get("at", 0)))
    kind = e.get("type", "?")
    who = e.get("session", "-")
    if kind == "state":
        return f"{stamp} {who} state {e['from']} -> {e['to']} ({e.get('reason', '')})"
    if kind == "message":
        return f"{stamp} {who} message from {e.get('sender')}: {e.get('body', '')!r}"
    rest = {k: v for k, v in e.items() if k not in ("type", "session", "at", "seq")}
    return f"{stamp} {who} {kind} {rest}"


def metrics(ctx: typer.Context) -> None:
    """Prometheus text exposition of daemon and session metrics."""
    data = call(ctx, "metrics.get")
    print(data["text"], end="")


def top(
    ctx: typer.Context,
    interval: Annotated[float, typer.Option(help="refresh interval in seconds")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="print one frame and exit")] = False,
    wide: Wide = False,
) -> None:
    """Live view: state, pid, PSS, fds, processes, uptime, restarts, last reason per session."""
    from rich.live import Live

    def frame() -> Any:
        # Measured for each frame: the terminal may have been resized meanwhile.
        sessions = call(ctx, "session.list")
        now = time.time()
        rows, title = tables.top_rows(sessions, now), tables.top_title(sessions, now)
        return render.fit(tables.TOP, rows, table_width(), wide=wide, title=title)

    if once:
        render.show(frame(), table_width(), wide=wide)
        return
    with Live(frame(), refresh_per_second=4, screen=False) as live:
        while True:
            time.sleep(interval)
            live.update(frame())


def reload(ctx: typer.Context) -> None:
    """Re-read the config file; prints which keys applied and which need a restart."""
    data = call(ctx, "daemon.reload")
    if opts(ctx).json:
        emit_json(data)
        return
    print("applied: " + (", ".join(data["applied"]) or "nothing"))
    if data["need_restart"]:
        print("need a daemon restart: " + ", ".join(data["need_restart"]))


def backup(
    ctx: typer.Context,
    keep: Annotated[
        int, typer.Option(help="then remove all but the newest KEEP backups (0: keep all)")
    ] = 0,
) -> None:
    """Consistent backup while sessions run (database + sealed profiles) under the state dir."""
    # Checkpointing and verifying many profiles takes longer than one ordinary request.
    data = call(ctx, "daemon.backup", timeout=max(opts(ctx).timeout, 600.0), keep=keep)
    if opts(ctx).json:
        emit_json(data)
        raise typer.Exit(1 if data["damaged"] else 0)
    print(data["path"])
    print(
        f"{render.count(len(data['sessions']), 'session')}, {render.count(data['files'], 'file')},"
        f" {render.count(data['bytes'], 'byte')}",
        file=sys.stderr,
    )
    for name, why in data["not_checkpointed"].items():
        print(f"warning: {name}: previous archive used ({why})", file=sys.stderr)
    if data["pruned"]:
        print("removed: " + ", ".join(data["pruned"]), file=sys.stderr)
    for name, why in data["damaged"].items():
        print(f"error: {name}: archive left out of the backup: {why}", file=sys.stderr)
    if data["damaged"]:
        raise typer.Exit(1)  # written, but a timer's failure should get someone to look


def register(app: typer.Typer) -> None:
    """Add these commands to the root app."""
    app.command()(status)
    app.command()(health)
    app.command()(events)
    app.command()(metrics)
    app.command()(top)
    app.command()(reload)
    app.command()(backup)
