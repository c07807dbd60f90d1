"""DevTools over `--remote-debugging-pipe`: NUL-delimited JSON on the child's fds 3 (in) and 4 (out).

`PipeTransport` offers what pyppeteer's `Connection` expects from its websocket (`async with`,
`recv()`, `send(str)`, `close()`), so pyppeteer's sessions and Page API run unchanged on top of a
transport that no other local user can reach (there is no TCP port). When the browser goes away,
`recv()` and `send()` raise `PipeClosed`, a `websockets.ConnectionClosed` (what pyppeteer's receive
and send paths catch) that is also a `ConnectionResetError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from types import TracebackType

from websockets.exceptions import ConnectionClosed


class PipeClosed(ConnectionClosed, ConnectionResetError):
    """The DevTools pipe is closed: the browser exited or we closed our ends."""

    def __init__(self, detail: str) -> None:
        ConnectionClosed.__init__(self, None, None)
        ConnectionResetError.__init__(self, detail)
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class _Reader(asyncio.Protocol):
    """Splits the byte stream on NUL into messages (linear in the message size): into the
    queue, or to `sink` once one is set."""

    def __init__(self, queue: asyncio.Queue[str | None]) -> None:
        self.queue = queue
        self.sink: Callable[[str], None] | None = None
        self.buf = bytearray()
        self.scanned = 0  # bytes of `buf` already known to hold no NUL

    def data_received(self, data: bytes) -> None:
        self.buf += data
        # Search only the new bytes: a screenshot arrives as one message of many MB in 256 KiB
        # reads, and rescanning from the start each time would be quadratic.
        while (end := self.buf.find(b"\0", self.scanned)) >= 0:
            message = self.buf[:end].decode("utf-8", errors="replace")
            del self.buf[: end + 1]
            if self.sink is None:
                self.queue.put_nowait(message)
            else:
                self.sink(message)
            self.scanned = 0
        self.scanned = len(self.buf)

    def eof_received(self) -> bool:
        self.queue.put_nowait(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait(None)


class PipeTransport:
    """Our ends of the two pipes: we write the child's fd 3 and read its fd 4.

    Owns both fds from construction on: `close()` closes them, also when `open()` was never called.
    """

    def __init__(self, write_fd: int, read_fd: int) -> None:
        self._write_fd = write_fd
        self._read_fd = read_fd
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._writer: asyncio.WriteTransport | None = None
        self._reader: asyncio.ReadTransport | None = None
        self._protocol: _Reader | None = None
        self.closed = False

    async def open(self) -> PipeTransport:
        """Attach both pipe ends to the running loop."""
        loop = asyncio.get_running_loop()
        rfile = os.fdopen(self._read_fd, "rb", buffering=0)
        wfile = os.fdopen(self._write_fd, "wb", buffering=0)
        self._reader, self._protocol = await loop.connect_read_pipe(
            lambda: _Reader(self._queue), rfile
        )
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

    def deliver_to(self, sink: Callable[[str], None]) -> None:
        """Hand every message to `sink` in the read callback that completes it, in order
        (those already queued first), instead of queueing it for `recv()`: no task wake-up
        per message. `recv()` then only reports the close. `sink` must not raise."""
        assert self._protocol is not None, "open() first"
        while not self._queue.empty():
            queued = self._queue.get_nowait()
            if queued is None:  # closed already: recv() reports it
                self._queue.put_nowait(None)
                break
            sink(queued)
        self._protocol.sink = sink

    async def recv(self) -> str:
        """The next message; `PipeClosed` once the browser closed its end or we closed ours."""
        if self.closed and self._queue.empty():
            raise PipeClosed("DevTools pipe closed")
        msg = await self._queue.get()
        if msg is None:
            self.closed = True
            self._queue.put_nowait(None)  # every later recv() sees the close too
            raise PipeClosed("DevTools pipe closed by the browser")
        return msg

    async def send(self, message: str) -> None:
        """Queue one message followed by NUL; `PipeClosed` when the pipe is gone."""
        if not self.write_now(message):
            raise PipeClosed("DevTools pipe closed")

    def write_now(self, message: str) -> bool:
        """Queue one message followed by NUL without awaiting (the write transport buffers
        it); False, with nothing written, when the pipe is gone or not open yet."""
        if self.closed or self._writer is None or self._writer.is_closing():
            return False
        self._writer.write(message.encode() + b"\0")
        return True

    async def close(self) -> None:
        """Close our ends (Chromium exits soon after its pipe closes). Idempotent."""
        if self._writer is None and self._reader is None and not self.closed:
            for fd in (self._write_fd, self._read_fd):  # never opened: the raw fds are ours
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.closed = True
        for t in (self._writer, self._reader):
            if t is not None:
                with contextlib.suppress(Exception):
                    t.close()
        self._queue.put_nowait(None)
