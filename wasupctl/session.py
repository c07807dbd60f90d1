"""`wasupctl session ...`: create (with the live QR), list, show, start, stop, restart, logout, rm."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from wasupctl import render
from wasupctl.common import Wide, call, die, emit_json, emit_ndjson, fail, guard, opts, table_width

app = typer.Typer(no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="session name")]

LINKED = "connected"
FINAL_BAD = {"failed", "logged_out", "stopped"}


def _show_one(ctx: typer.Context, data: dict[str, Any]) -> None:
    if opts(ctx).json:
        emit_json(data)
        return
    print(f"{data['name']}: {data['state']}" + (f" ({data['reason']})" if data["reason"] else ""))


@app.command()
def create(
    ctx: typer.Context,
    name: Name,
    phone: Annotated[
        str | None, typer.Option(help="the account's number (for pairing/age)")
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="return at once, do not show the QR")
    ] = False,
    no_start: Annotated[bool, typer.Option("--no-start", help="create stopped")] = False,
    build: Annotated[str | None, typer.Option(help="browser build: full | headless-shell")] = None,
    proxy: Annotated[str | None, typer.Option(help="proxy server for this session")] = None,
    wait_timeout: Annotated[
        float, typer.Option(help="give up waiting for the link after S seconds")
    ] = 600.0,
) -> None:
    """Create a session and show its login QR live until the phone links it."""
    options = {k: v for k, v in {"build": build, "proxy": proxy}.items() if v is not None}
    params: dict[str, Any] = {"name": name, "start": not no_start, "options": options}
    if phone:
        params["phone"] = phone
    data = call(ctx, "session.create", **params)
    if no_wait or no_start:
        _show_one(ctx, data)
        return
    wait_linked(ctx, name, wait_timeout)


def wait_linked(
    ctx: typer.Context, name: str, wait_timeout: float, *, show_qr: bool = True
) -> None:
    """Follow the session's events, re-rendering the QR on rotation (unless linking by code),
    until linked or failed."""
    from wasupd.rpc.client import Client

    o = opts(ctx)
    deadline = time.monotonic() + wait_timeout
    with Client(o.socket, timeout=o.timeout) as client:
        guard(
            lambda: client.call("events.subscribe", sessions=[name], types=["state", "qr", "code"])
        )
        info = guard(lambda: client.call("session.get", name=name, history=0))
        state = info["state"]
        qr: dict[str, Any] | None = None
        if state == "qr" and show_qr:
            qr = _current_qr(client, name)
            if qr is not None:
                _draw_qr(o.json, name, qr)
        while state != LINKED:
            if state in FINAL_BAD:
                die(f"session {name!r} is {state}: {info.get('reason') or 'see session show'}")
            if time.monotonic() > deadline:
                die(f"session {name!r} not linked within {wait_timeout:g} s (state {state})", 6)
            event = client.next_event(1.0)
            if event is None:
                if qr is not None and not o.json:
                    _countdown(qr)
                continue
            if event["type"] == "state":
                state = event["to"]
                info["reason"] = event.get("reason", "")
                if not o.json:
                    print(f"\nstate: {state}" + (f" ({info['reason']})" if info["reason"] else ""))
            elif event["type"] == "qr" and show_qr:
                qr = event
                _draw_qr(o.json, name, qr)
            elif event["type"] == "code" and o.json:
                emit_ndjson(event)
            elif event["type"] == "code":  # the page renewed the pairing code
                code = str(event["code"])
                print(f"pairing code for {name}: {code[:4]}-{code[4:]}", flush=True)
    if o.json:
        emit_ndjson({"type": "linked", "session": name})
    else:
        print(f"\nsession {name!r} is linked and connected.")


def _current_qr(client: Any, name: str) -> dict[str, Any] | None:
    """The QR on offer, or None when the session moved on meanwhile (linked, failed)."""
    from wasupd.errors import InvalidState, WasupError

    try:
        qr: dict[str, Any] = client.call("session.qr", name=name)
    except InvalidState:
        return None
    except WasupError as exc:
        fail(exc)
    return qr


def _draw_qr(as_json: bool, name: str, qr: dict[str, Any]) -> None:
    if as_json:
        emit_ndjson({"type": "qr", "session": name, **{k: qr[k] for k in qr if k != "type"}})
        return
    if sys.stdout.isatty():
        sys.stdout.write("\x1b[2J\x1b[H")
    print(render.qr_text(qr["payload"]))
    print(f"Scan with WhatsApp on the phone: Settings > Linked devices > Link a device ({name})")
    _countdown(qr)


def _countdown(qr: dict[str, Any]) -> None:
    left = max(0, int(qr.get("expires_at", 0) - time.time()))
    rotation = qr.get("rotation", 0)
    end = "\r" if sys.stdout.isatty() else "\n"
    if sys.stdout.isatty() or left % 10 == 0:
        sys.stdout.write(f"QR {rotation + 1}: expires in {left:3d} s {end}")
        sys.stdout.flush()


@app.command("list")
def list_(ctx: typer.Context, wide: Wide = False) -> None:
    """Every session with its state."""
    from wasupctl.daemon_cmds import sessions_table

    data = call(ctx, "session.list")
    if opts(ctx).json:
        emit_json(data)
    else:
        sessions_table(data, table_width(), wide)


@app.command()
def show(
    ctx: typer.Context,
    name: Name,
    history: Annotated[int, typer.Option(help="how many transitions to show")] = 20,
) -> None:
    """One session in detail, with its state history."""
    data = call(ctx, "session.get", name=name, history=history)
    if opts(ctx).json:
        emit_json(data)
        return
    usage = data.get("usage") or {}
    storage = data.get("storage") or {}
    fields = [
        ("name", data["name"]),
        ("state", render.state(data["state"])),
        ("reason", data["reason"] or "-"),
        ("phone", data.get("phone") or "-"),
        ("account", data.get("me") or "-"),
        ("pid", data.get("pid") or "-"),
        ("memory (PSS)", render.pss(data)),
        ("fds / processes", f"{usage.get('fds', '-')} / {usage.get('processes', '-')}"),
        ("restarts", data.get("restarts", 0)),
        ("live profile", render.size(storage.get("live_bytes"))),
        ("sealed archive", render.size(storage.get("sealed_bytes"))),
        ("created", render.when(data.get("created_at"))),
        ("linked", render.when(data.get("linked_at"))),
    ]
    render.table(None, ["FIELD", "VALUE"], fields)
    rows = [[render.when(h["at"]), h["from"], h["to"], h["reason"]] for h in data["history"]]
    render.table("history", ["AT", "FROM", "TO", "REASON"], rows)


def _simple(verb: str, doc: str) -> None:
    def command(ctx: typer.Context, name: Name) -> None:
        _show_one(ctx, call(ctx, f"session.{verb}", timeout=opts(ctx).timeout + 60, name=name))

    command.__doc__ = doc
    app.command(verb)(command)


_simple("start", "Start a stopped, failed or logged-out session.")
_simple("stop", "Stop a session; returns once its browser tree is gone.")
_simple("restart", "Restart a session's browser.")
_simple("logout", "Unlink this device from the phone; the profile is wiped.")


@app.command()
def move(
    ctx: typer.Context,
    name: Name,
    to: Annotated[str, typer.Option("--to", help="the host to run it on (host list)")],
) -> None:
    """Move a session to another host of the fleet (stopped there, started here from its
    sealed profile: no QR)."""
    data = call(ctx, "session.move", name=name, to=to)
    if opts(ctx).json:
        emit_json(data)
    else:
        print(f"{name}: moving from {data['from'] or 'no host'} to {data['to']}")


@app.command("rm")
def rm(
    ctx: typer.Context,
    name: Name,
    force: Annotated[bool, typer.Option("--force", help="stop it first if running")] = False,
) -> None:
    """Delete a session and its profile archive."""
    data = call(ctx, "session.delete", name=name, force=force)
    if opts(ctx).json:
        emit_json(data)
    else:
        print(f"deleted {name}")


@app.command("export")
def export(
    ctx: typer.Context,
    name: Name,
    output: Annotated[Path, typer.Option("-o", "--output", help="file to write")],
) -> None:
    """Write the session's sealed (still encrypted) profile archive to a file."""
    from wasupctl.transfer import download

    size = download(ctx, name, output)
    if opts(ctx).json:
        emit_json({"session": name, "file": str(output), "bytes": size})
    else:
        print(f"exported {name} to {output} ({render.count(size, 'byte')}, encrypted)")


@app.command("import")
def import_(
    ctx: typer.Context,
    name: Name,
    input_: Annotated[Path, typer.Option("-i", "--input", help="archive from `session export`")],
    replace: Annotated[
        bool, typer.Option("--replace", help="replace an existing stopped session")
    ] = False,
) -> None:
    """Install an exported archive as session NAME (the daemon must hold the same key)."""
    from wasupctl.transfer import upload

    data = upload(ctx, name, input_, replace=replace)
    if opts(ctx).json:
        emit_json(data)
    else:
        print(f"imported {name} (start it: wasupctl session start {name})")


profiles_app = typer.Typer(no_args_is_help=True)


@profiles_app.command("rekey")
def rekey(ctx: typer.Context) -> None:
    """Re-seal every profile archive under the current key (after `wasupd keygen --add`)."""
    data = call(ctx, "profiles.rekey", timeout=600)
    if opts(ctx).json:
        emit_json(data)
    else:
        print(
            f"current key {data['current_key']}: re-sealed {len(data['resealed'])}, already current {len(data['already_current'])}"
        )
