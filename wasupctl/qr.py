"""`qr` and `pair`: linking a session to the phone."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from wasupctl import render
from wasupctl.common import call, die, emit_json, opts


class QrFormat(StrEnum):
    """Output formats of `wasupctl qr`."""

    terminal = "terminal"
    png = "png"
    svg = "svg"
    raw = "raw"


def qr(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="session name")],
    format_: Annotated[
        QrFormat, typer.Option("--format", "-f", help="output format")
    ] = QrFormat.terminal,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="write to FILE")] = None,
    wait: Annotated[float, typer.Option(help="wait up to S seconds for a QR")] = 30.0,
) -> None:
    """The session's current login QR (terminal half-blocks, PNG, SVG, or the raw payload)."""
    data = call(ctx, "session.qr", timeout=opts(ctx).timeout + wait, name=name, wait=wait)
    if opts(ctx).json and format_ is QrFormat.terminal:
        emit_json(data)
        return
    payload = data["payload"]
    if format_ in (QrFormat.png, QrFormat.svg):
        import io

        import segno

        buf = io.BytesIO()
        segno.make_qr(payload, error="l").save(buf, kind=format_.value, scale=8, border=4)
        blob = buf.getvalue()
        if output is None:
            if sys.stdout.isatty():
                die(f"{format_.value} output is binary: use -o FILE or redirect stdout", 2)
            sys.stdout.buffer.write(blob)
        else:
            output.write_bytes(blob)
        return
    text = (
        payload
        if format_ is QrFormat.raw
        else render.qr_text(payload, color=output is None and None)
    )
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)


def pair(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="session name")],
    phone: Annotated[str, typer.Option("--phone", help="the account's number, with country code")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait until linked")] = True,
    wait_timeout: Annotated[float, typer.Option(help="give up waiting after S seconds")] = 600.0,
) -> None:
    """Link by pairing code: prints the 8-character code to type on the phone."""
    data = call(ctx, "session.pair", timeout=opts(ctx).timeout + 60, name=name, phone=phone)
    code = data["code"]
    if opts(ctx).json:
        emit_json(data)
    else:
        print(f"pairing code for {name}: {code[:4]}-{code[4:]}")
        print("On the phone: Linked devices > Link a device > Link with phone number instead")
    sys.stdout.flush()  # a script reads the code while we wait for the link
    if wait:
        from wasupctl.session import wait_linked

        wait_linked(ctx, name, wait_timeout, show_qr=False)


def register(app: typer.Typer) -> None:
    """Add these commands to the root app."""
    app.command()(qr)
    app.command()(pair)
