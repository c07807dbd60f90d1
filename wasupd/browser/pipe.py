"""DevTools over `--remote-debugging-pipe`: NUL-delimited JSON on the child's fds 3 (in) and 4 (out).

`PipeTransport` offers what pyppeteer's `Connection` expects from its websocket (`async with`,
`recv()`, `send(str)`, `close()`), so pyppeteer's sessions and Page API run unchanged on top of a
transport that no other local user can reach (there is no TCP port).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from types import TracebackType


class _Reader(asyncio.Protocol):
    """Splits the byte stream on NUL into messages."""

    def __init__(self, queue: asyncio.Queue[str | None]) -> None:
        self.queue = queue
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\0")) >= 0:
            self.queue.put_nowait(self.buf[:end].decode("utf-8", errors="replace"))
            del self.buf[: end + 1]

    def eof_received(self) -> bool:
        self.queue.put_nowait(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait(None)


class PipeTransport:
    """Our ends of the two pipes: we write the child's fd 3 and read its fd 4."""

    def __init__(self, write_fd: int, read_fd: int) -> None:
        self._write_fd = write_fd
        self._read_fd = read_fd
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._writer: asyncio.WriteTransport | None = None
        self._reader: asyncio.ReadTransport | None = None
        self.closed = False

    async def open(self) -> PipeTransport:
        """Attach both pipe ends to the running loop."""
        loop = asyncio.get_running_loop()
        rfile = os.fdopen(self._read_fd, "rb", buffering=0)
        wfile = os.fdopen(self._write_fd, "wb", buffering=0)
        self._reader, _ = await loop.connect_read_pipe(lambda: _Reader(self._queue), rfile)
        self._writer, _ = await loop.connect_write_pipe(asyncio.Protocol, wfile)
        return self

    async def __aenter__(self) -> PipeTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def recv(self) -> str:
        """The next message; `ConnectionResetError` once the browser closed its end."""
        if self.closed and self._queue.empty():
            raise ConnectionResetError("DevTools pipe closed")
        msg = await self._queue.get()
        if msg is None:
            self.closed = True
            raise ConnectionResetError("DevTools pipe closed by the browser")
        return msg

    async def send(self, message: str) -> None:
        """Write one message followed by NUL."""
        if self.closed or self._writer is None or self._writer.is_closing():
            raise ConnectionResetError("DevTools pipe closed")
        self._writer.write(message.encode() + b"\0")

    async def close(self) -> None:
        """Close our ends (Chromium exits soon after its pipe closes)."""
        self.closed = True
        for t in (self._writer, self._reader):
            if t is not None:
                with contextlib.suppress(Exception):
                    t.close()
        self._queue.put_nowait(None)
