"""Moving sealed archives through the socket in chunks (export/import across users and hosts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from wasupctl.chunks import CHUNK, atomic_file, encode, fetch
from wasupctl.common import call, die


def download(ctx: typer.Context, name: str, output: Path) -> int:
    """Fetch the archive chunk by chunk into `output` (atomically); its size."""
    with atomic_file(output) as fh:
        size, _ = fetch(ctx, "session.export", fh, name=name)
    return size


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
                "data": encode(chunk),
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
