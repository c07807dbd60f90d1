"""Files through the socket in chunks: the one download loop and the atomic file it fills.

Every method that moves a file (`session.export`, `media.get`; `session.import`,
`media.upload` the other way) takes base64 chunks of at most `CHUNK` bytes, so that no message
comes near the socket's 1 MiB limit.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import typer

from wasupctl.common import call

CHUNK = 512 * 1024  # base64 of this stays well under the 1 MiB message limit


def encode(chunk: bytes) -> str:
    """A chunk as the `data` parameter of an upload method."""
    return base64.b64encode(chunk).decode()


def fetch(ctx: typer.Context, method: str, sink: IO[bytes], **params: Any) -> tuple[int, Any]:
    """Call `method` at growing offsets, writing each chunk to `sink`, until a part says `done`.

    Returns the bytes written and the last part (which carries the method's metadata).
    """
    offset = 0
    while True:
        part = call(ctx, method, offset=offset, size=CHUNK, **params)
        data = base64.b64decode(part["data"])
        sink.write(data)
        offset += len(data)
        if part["done"]:
            return offset, part


@contextlib.contextmanager
def atomic_file(output: Path) -> Iterator[IO[bytes]]:
    """A file that appears at `output` whole (fsynced, renamed) or not at all."""
    tmp = output.with_name(f".{output.name}.part")
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
