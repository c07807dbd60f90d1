"""`media get`, and the upload behind `send --file`: files through the socket in chunks."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from wasupctl.chunks import CHUNK, atomic_file, encode, fetch
from wasupctl.common import call, die, emit_json, opts

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
        params: dict[str, Any] = {"data": encode(chunk), "offset": offset}
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
    if str(output) == "-":
        fetch(ctx, "media.get", sys.stdout.buffer, id=message_id)
        sys.stdout.buffer.flush()
        return
    with atomic_file(output) as fh:
        size, part = fetch(ctx, "media.get", fh, id=message_id)
    meta = {k: part.get(k) for k in ("sha256", "kind", "mime", "name")}
    if opts(ctx).json:
        emit_json({**meta, "bytes": size, "path": str(output)})
    else:
        print(f"{output}: {size} bytes, {meta['kind']} {meta['mime']}, sha256 {meta['sha256']}")
