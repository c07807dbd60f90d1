"""Clients of the control socket: a blocking one for `wasupctl`, an asyncio one for tests/benches.

Both raise the `wasupd.errors` class named by `error.data.name`, so callers handle
`SessionNotFound` and friends, not codes. The blocking client imports nothing heavy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from wasupd import protocol
from wasupd.errors import (
    DaemonUnreachable,
    ProtocolError,
    Timeout,
    WasupError,
    error_class_for,
)


def raise_for_error(error: dict[str, Any]) -> None:
    """Turn a JSON-RPC error object into the matching `WasupError` and raise it."""
    data = dict(error.get("data") or {})
    name = str(data.pop("name", ""))
    message = str(error.get("message", "error"))
    cls = error_class_for(name)
    if cls is ProtocolError or not name:
        raise ProtocolError(int(error.get("code", -32603)), message, **data)
    raise cls(message, **data)


def unreachable(path: Path, exc: OSError | None) -> DaemonUnreachable:
    """The error for a socket nobody answers on: which socket, and how to start the daemon."""
    why = f" ({exc.strerror or exc})" if exc else ""
    return DaemonUnreachable(
        f"cannot reach wasupd at {path}{why}. Start it with `systemctl start wasupd` (or run"
        " `wasupd`), or point --socket / WASUP_SOCKET at the right socket.",
        socket=str(path),
    )


class Client:
    """Blocking JSON-RPC client over the Unix socket; one connection, sequential calls."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._buf = b""
        # Notifications that arrived while a call waited for its reply.
        self._events: deque[dict[str, Any]] = deque()

    def connect(self) -> None:
        """Open the connection (done lazily by `call`)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                sock.connect(str(self.path))
                break
            except BlockingIOError:  # listen backlog full: the daemon is busy, not gone
                if time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                sock.close()
                raise Timeout(f"wasupd at {self.path} did not accept a connection") from None
            except OSError as exc:
                sock.close()
                raise unreachable(self.path, exc) from None
        self._sock = sock

    def close(self) -> None:
        """Close the connection."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _readline(self, deadline: float | None) -> dict[str, Any]:
        assert self._sock is not None
        while b"\n" not in self._buf:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout(f"no answer from wasupd within {self.timeout:g} s")
                self._sock.settimeout(remaining)
            else:
                self._sock.settimeout(None)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise Timeout(f"no answer from wasupd within {self.timeout:g} s") from None
            except OSError as exc:
                raise unreachable(self.path, exc) from None
            if not chunk:
                raise DaemonUnreachable(
                    f"wasupd closed the connection on {self.path} (restarting or shutting down?)",
                    socket=str(self.path),
                )
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        msg: dict[str, Any] = json.loads(line)
        return msg

    def _send(self, method: str, params: dict[str, Any]) -> int:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        req_id = next(self._ids)
        req = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}
        try:
            self._sock.sendall(protocol.encode(req))
        except OSError as exc:
            raise unreachable(self.path, exc) from None
        return req_id

    def call(self, method: str, timeout: float | None = None, **params: Any) -> Any:
        """Call `method` with named `params` and return its result (or raise its error)."""
        req_id = self._send(method, params)
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            msg = self._readline(deadline)
            if msg.get("method") == "event":
                self._events.append(msg["params"])
                continue
            if msg.get("id") == req_id or ("error" in msg and msg.get("id") is None):
                break
        if "error" in msg:
            raise_for_error(msg["error"])
        return msg.get("result")

    def stream(self, method: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Call a subscription method, then yield its `event` notifications forever."""
        self.call(method, **params)
        while True:
            event = self.next_event(None)
            if event is not None:
                yield event

    def next_event(self, timeout: float | None) -> dict[str, Any] | None:
        """The next `event` notification of a subscription; None if `timeout` passes first."""
        if self._events:
            return self._events.popleft()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                msg = self._readline(deadline)
            except Timeout:
                return None
            if msg.get("method") == "event":
                params: dict[str, Any] = msg["params"]
                return params


class AsyncClient:
    """asyncio JSON-RPC client; many calls may be in flight on one connection."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> AsyncClient:
        """Open the connection and start reading replies."""
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(
                str(self.path), limit=protocol.MAX_MESSAGE_BYTES * 8
            )
        except OSError as exc:
            raise unreachable(self.path, exc) from None
        self._task = asyncio.ensure_future(self._read())
        return self

    async def _read(self) -> None:
        assert self._reader is not None
        try:
            while line := await self._reader.readline():
                msg = json.loads(line)
                if "id" in msg and msg["id"] in self._pending:
                    self._pending.pop(msg["id"]).set_result(msg)
                elif msg.get("method") == "event":
                    self.events.put_nowait(msg["params"])
                elif "error" in msg:  # connection-level error (Unauthorized, too large)
                    for fut in self._pending.values():
                        fut.set_result(msg)
                    self._pending.clear()
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(
                        DaemonUnreachable(f"wasupd closed the connection on {self.path}")
                    )
            self._pending.clear()

    async def call(self, method: str, **params: Any) -> Any:
        """Call `method` and await its result (bounded by the client timeout)."""
        if self._writer is None:
            await self.connect()
        assert self._writer is not None
        req_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        req = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}
        self._writer.write(protocol.encode(req))
        try:
            async with asyncio.timeout(self.timeout):
                msg = await fut
        except TimeoutError:
            self._pending.pop(req_id, None)
            raise Timeout(f"{method}: no answer within {self.timeout:g} s") from None
        if "error" in msg:
            raise_for_error(msg["error"])
        return msg.get("result")

    async def subscribe(self, **params: Any) -> AsyncIterator[dict[str, Any]]:
        """`events.subscribe` then yield events as they arrive."""
        await self.call("events.subscribe", **params)
        while True:
            yield await self.events.get()

    async def close(self) -> None:
        """Close the connection."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError, WasupError):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def __aenter__(self) -> AsyncClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
