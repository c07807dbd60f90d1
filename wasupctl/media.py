"""`media get`, and the upload behind `send --file`: files through the socket in chunks."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from wasupctl.common import call, die, emit_json, opts

CHUNK = 512 * 1024  # base64 of this stays well under the 1 MiB message limit
KINDS = ("document", "image", "video", "audio", "voice", "sticker")

app = typer.Typer(no_args_is_help=True)


def upload(ctx: typer.Context, source: str) -> str:
    """Send the file `source` (`-`: standard input) chunk by chunk; the upload token."""
    if source == "-":
        return _upload(ctx, sys.stdin.buffer)
    try:
        fh = open(source, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        die(f"cannot read {source}: {exc.strerror}", 2)
    with fh:
        return _upload(ctx, fh)


def _upload(ctx: typer.Context, fh: IO[bytes]) -> str:
    token: str | None = None
    offset = 0
    while True:
        chunk = fh.read(CHUNK)
        if not chunk and token is not None:
            return token
        if not chunk:
            die("nothing to send: the file is empty", 2)
        params: dict[str, Any] = {"data": base64.b64encode(chunk).decode(), "offset": offset}
        if token:
            params["token"] = token
        token = str(call(ctx, "media.upload", **params)["token"])
        offset += len(chunk)


def file_name(source: str, given: str | None) -> str:
    """What the recipient sees as the file's name: `--filename`, else the path's last part."""
    if given is not None:
        return given
    return "" if source == "-" else os.path.basename(source)


@app.command("get")
def get(
    ctx: typer.Context,
    message_id: Annotated[
        str, typer.Argument(help="an outbox id (m...) or a received message's inbox id")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="file to write ('-': stdout)")],
) -> None:
    """Write a message's file: one sent, or one received (fetched through its session's
    page first when it is not in the daemon's media store yet)."""
    sink: IO[bytes]
    tmp = output.with_name(f".{output.name}.part")
    sink = sys.stdout.buffer if str(output) == "-" else open(tmp, "wb")  # noqa: SIM115
    offset, part = 0, {}
    try:
        while True:
            part = call(ctx, "media.get", id=message_id, offset=offset, size=CHUNK)
            data = base64.b64decode(part["data"])
            sink.write(data)
            offset += len(data)
            if part["done"]:
                break
        sink.flush()
        if sink is not sys.stdout.buffer:
            os.fsync(sink.fileno())
    finally:
        if sink is not sys.stdout.buffer:
            sink.close()
    if str(output) != "-":
        os.replace(tmp, output)
        meta = {k: part.get(k) for k in ("sha256", "kind", "mime", "name")}
        if opts(ctx).json:
            emit_json({**meta, "bytes": offset, "path": str(output)})
        else:
            print(
                f"{output}: {offset} bytes, {meta['kind']} {meta['mime']}, sha256 {meta['sha256']}"
            )
