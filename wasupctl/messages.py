"""`send`, `inbox`, `outbox`, `message`, `webhooks`: messages in and out."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from wasupctl import render, tables
from wasupctl.common import Wide, call, die, emit_json, emit_ndjson, guard, opts, table_width
from wasupd.addressing import display, is_group
from wasupd.errors import EXIT_FAILURE

WAIT_STATES = {"sent": ("sent", "delivered", "read"), "delivered": ("delivered", "read")}


def _read_stdin() -> str:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        die("standard input is not valid UTF-8", 2)


def send(
    ctx: typer.Context,
    to: Annotated[
        str,
        typer.Argument(help="phone number (+49 151 ...) or chat id (...@c.us, ...@lid, ...@g.us)"),
    ],
    text: Annotated[
        str | None, typer.Argument(help="message text; omit or '-' to read stdin")
    ] = None,
    from_: Annotated[
        str, typer.Option("--from", help="session name, or 'auto' for the pool")
    ] = "auto",
    lines: Annotated[bool, typer.Option("--lines", help="one message per stdin line")] = False,
    key: Annotated[
        str | None, typer.Option("--key", help="idempotency key: repeats send once")
    ] = None,
    wait: Annotated[
        str | None,
        typer.Option("--wait", help="wait for 'sent' or 'delivered'", show_default=False),
    ] = None,
    wait_timeout: Annotated[float, typer.Option(help="seconds --wait may take")] = 300.0,
    force: Annotated[
        bool, typer.Option("--force", help="send even to a contact who opted out")
    ] = False,
    file: Annotated[
        str | None, typer.Option("--file", help="send this file ('-': read it from stdin)")
    ] = None,
    caption: Annotated[str, typer.Option("--caption", help="text shown with the file")] = "",
    as_: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="document, image, video, audio, voice or sticker [default: from the content]",
        ),
    ] = None,
    filename: Annotated[
        str | None, typer.Option("--filename", help="file name the recipient sees")
    ] = None,
) -> None:
    """Queue a message (durably) and print its id; --wait blocks until sent or delivered.
    With --file a document, picture, video, audio, voice note or sticker (the kind is read
    from the content; --as chooses), its caption from --caption."""
    if wait is not None and wait not in WAIT_STATES:
        die("--wait takes 'sent' or 'delivered'", 2)
    if file is not None:
        _send_file(
            ctx, to, text, file, caption, as_, filename, from_, key, force, wait, wait_timeout
        )
        return
    if caption or as_ or filename is not None:
        die("--caption, --as and --filename go with --file", 2)
    if text is None or text == "-":
        body = _read_stdin()
        texts = [ln for ln in body.split("\n") if ln] if lines else [body]
    else:
        texts = [text] if not lines else [ln for ln in text.split("\n") if ln]
    if not texts or (len(texts) == 1 and texts[0] == ""):
        die("nothing to send: the text is empty", 2)
    ids = _enqueue(ctx, to, texts, from_, key, force)
    if wait:
        _wait(ctx, ids, WAIT_STATES[wait], wait_timeout)


def _send_file(
    ctx: typer.Context,
    to: str,
    text: str | None,
    file: str,
    caption: str,
    kind: str | None,
    filename: str | None,
    from_: str,
    key: str | None,
    force: bool,
    wait: str | None,
    wait_timeout: float,
) -> None:
    from wasupctl import media

    if text is not None:
        die("with --file the text goes in --caption", 2)
    if kind is not None and kind not in media.KINDS:
        die(f"--as takes one of {', '.join(media.KINDS)}", 2)
    token = media.upload(ctx, file)
    params: dict[str, Any] = {"to": to, "text": caption, "session": from_, "file": token}
    params["filename"] = media.file_name(file, filename)
    if kind:
        params["kind"] = kind
    if force:
        params["force"] = True
    if key:
        params["idempotency_key"] = key
    msg = call(ctx, "message.send", **params)
    if opts(ctx).json:
        emit_ndjson(msg)
    else:
        print(msg["id"], flush=True)
    if wait:
        _wait(ctx, [msg["id"]], WAIT_STATES[wait], wait_timeout)


def _enqueue(
    ctx: typer.Context, to: str, texts: list[str], from_: str, key: str | None, force: bool
) -> list[str]:
    from wasupd.rpc.client import Client

    o = opts(ctx)
    ids = []
    with Client(o.socket, timeout=o.timeout) as client:
        for i, body in enumerate(texts):
            params: dict[str, Any] = {"to": to, "text": body, "session": from_}
            if force:
                params["force"] = True
            if key:
                params["idempotency_key"] = key if len(texts) == 1 else f"{key}:{i}"
            msg: dict[str, Any] = guard(lambda p=params: client.call("message.send", **p))  # type: ignore[misc]
            ids.append(msg["id"])
            if o.json:
                emit_ndjson(msg)
            else:
                print(msg["id"], flush=True)
    return ids


def _wait(ctx: typer.Context, ids: list[str], good: tuple[str, ...], timeout: float) -> None:
    from wasupd.rpc.client import Client

    o = opts(ctx)
    deadline = time.monotonic() + timeout
    pending = set(ids)
    with Client(o.socket, timeout=o.timeout) as client:
        guard(lambda: client.call("events.subscribe", types=["outbox"]))
        for mid in list(pending):  # states reached before we subscribed
            msg: dict[str, Any] = guard(lambda m=mid: client.call("message.get", id=m))  # type: ignore[misc]
            _check(msg, good, pending)
        while pending:
            if time.monotonic() > deadline:
                die(
                    f"{render.count(len(pending), 'message')} not {good[0]} within {timeout:g} s", 6
                )
            event = client.next_event(1.0)
            if event is not None and event.get("id") in pending:
                _check(event, good, pending)


def _check(msg: dict[str, Any], good: tuple[str, ...], pending: set[str]) -> None:
    if msg["state"] in good:
        pending.discard(msg["id"])
    elif msg["state"] in ("failed", "cancelled"):
        die(f"message {msg['id']} {msg['state']}: {msg.get('reason') or msg.get('last_error', '')}")


def inbox(
    ctx: typer.Context,
    session: Annotated[str | None, typer.Argument(help="only this session")] = None,
    limit: Annotated[int, typer.Option(help="how many of the latest")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="then stream new ones")] = False,
) -> None:
    """Received messages (stored before they are announced)."""
    params: dict[str, Any] = {"limit": limit}
    if session:
        params["session"] = session
    rows = call(ctx, "inbox.list", **params)
    _print_inbox(ctx, rows)
    if follow:
        from wasupd.rpc.client import Client

        o = opts(ctx)
        with Client(o.socket, timeout=o.timeout) as client:
            stream = client.stream(
                "events.subscribe", types=["message"], sessions=[session] if session else []
            )
            guard(lambda: _follow_inbox(ctx, stream))


def _follow_inbox(ctx: typer.Context, stream: Any) -> None:
    for event in stream:
        _print_inbox(ctx, [event])


def _file(r: dict[str, Any]) -> str:
    """A received file in a word: `[image photo.jpg, 879 KiB]`; `media get` fetches it."""
    name = f" {r['media_name']}" if r.get("media_name") else ""
    size = f", {render.size(r['media_size'])}" if r.get("media_size") is not None else ""
    return f"[{r['media_kind']}{name}{size}]"


def _print_inbox(ctx: typer.Context, rows: list[dict[str, Any]]) -> None:
    if opts(ctx).json:
        for r in rows:
            emit_ndjson(r)
        return
    for r in rows:
        text = f"{_file(r)} {r['body']}".strip() if r.get("media_kind") else r["body"]
        print(f"{render.when(r.get('t'))} {r['session']} {_sender(r)}: {text}", flush=True)


def _sender(row: dict[str, Any]) -> str:
    """The sender's number where WhatsApp told it (with the LID beside it), else its id; in a
    group, after the group."""
    who = display(row.get("sender_pn")) or row.get("sender") or "?"
    if row.get("sender_pn") and row.get("sender_lid"):
        who += f" ({row['sender_lid']})"
    chat = str(row.get("chat_id") or "")
    return f"{chat} {who}" if is_group(chat) else who


def outbox(
    ctx: typer.Context,
    session: Annotated[str | None, typer.Argument(help="only this session")] = None,
    state: Annotated[
        str | None, typer.Option(help="only this state (queued, sent, failed...)")
    ] = None,
    limit: Annotated[int, typer.Option(help="how many of the latest")] = 50,
    wide: Wide = False,
) -> None:
    """Queued and sent messages, with why and until when a queued one waits."""
    params: dict[str, Any] = {"limit": limit}
    if session:
        params["session"] = session
    if state:
        params["state"] = state
    rows = call(ctx, "outbox.list", **params)
    if opts(ctx).json:
        emit_json(rows)
        return
    render.print_table(tables.OUTBOX, tables.outbox_rows(rows), table_width(), wide=wide)


def message(
    ctx: typer.Context,
    id_: Annotated[str, typer.Argument(help="message id printed by send")],
    cancel: Annotated[bool, typer.Option("--cancel", help="cancel it if still queued")] = False,
) -> None:
    """Show one outgoing message (or cancel it while queued)."""
    data = call(ctx, "message.cancel" if cancel else "message.get", id=id_)
    if opts(ctx).json:
        emit_json(data)
    else:
        render.table(None, ["FIELD", "VALUE"], sorted(data.items()))


def webhooks(
    ctx: typer.Context,
    state: Annotated[str, typer.Option(help="pending, failed or delivered")] = "failed",
    limit: Annotated[int, typer.Option(help="how many")] = 50,
    retry: Annotated[
        list[str] | None,
        typer.Option(
            "--retry",
            metavar="ID",
            help="deliver this failed delivery again, from its first attempt, same id (repeat)",
        ),
    ] = None,
    retry_all: Annotated[
        bool, typer.Option("--retry-all", help="deliver every failed delivery again")
    ] = False,
) -> None:
    """Webhook deliveries (failures by default); --retry/--retry-all send failed ones again."""
    if retry or retry_all:
        out = call(ctx, "webhooks.retry", ids=retry or None, all=retry_all)
        if opts(ctx).json:
            emit_json(out)
        else:
            print(f"requeued {render.count(len(out['requeued']), 'delivery', 'deliveries')}")
            for did in out["skipped"]:
                print(f"skipped {did}: not a failed delivery", file=sys.stderr)
        if out["skipped"]:
            raise typer.Exit(EXIT_FAILURE)
        return
    rows = call(ctx, "webhooks.list", state=state, limit=limit)
    if opts(ctx).json:
        emit_json(rows)
        return
    table = [
        [
            r["id"],
            r["event"],
            r["state"],
            r["attempts"],
            r.get("last_status"),
            r.get("last_error", "")[:40],
            render.when(r.get("next_at")),
        ]
        for r in rows
    ]
    render.table(None, ["ID", "EVENT", "STATE", "TRIES", "HTTP", "ERROR", "NEXT"], table)


def register(app: typer.Typer) -> None:
    """Add these commands to the root app."""
    app.command()(send)
    app.command()(inbox)
    app.command()(outbox)
    app.command()(message)
    app.command()(webhooks)
