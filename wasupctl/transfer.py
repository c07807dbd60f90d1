"""Moving sealed archives through the socket in chunks (export/import across users and hosts)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import typer

from wasupctl.common import call, die

CHUNK = 512 * 1024  # base64 of this stays well under the 1 MiB message limit


def download(ctx: typer.Context, name: str, output: Path) -> int:
    """Fetch the archive chunk by chunk into `output` (atomically); its size."""
    tmp = output.with_name(f".{output.name}.part")
    offset = 0
    with open(tmp, "wb") as fh:
        while True:
            part = call(ctx, "session.export", name=name, offset=offset, size=CHUNK)
            data = base64.b64decode(part["data"])
            fh.write(data)
            offset += len(data)
            if part["done"]:
                break
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, output)
    return offset


def upload(ctx: typer.Context, name: str, source: Path, *, replace: bool) -> Any:
    """Send `source` chunk by chunk; the daemon verifies and installs it on the last chunk."""
    try:
        fh = open(source, "rb")  # noqa: SIM115 - closed below, after the loop
    except OSError as exc:
        die(f"cannot read {source}: {exc.strerror}", 2)
    with fh:
        token: str | None = None
        offset = 0
        while True:
            chunk = fh.read(CHUNK)
            last = len(chunk) < CHUNK
            params: dict[str, Any] = {
                "name": name,
                "data": base64.b64encode(chunk).decode(),
                "offset": offset,
                "final": last,
                "replace": replace,
            }
            if token:
                params["token"] = token
            result = call(ctx, "session.import", **params)
            token = result.get("token")
            offset += len(chunk)
            if last:
                return result
