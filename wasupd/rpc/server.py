"""The control socket: a JSON-RPC 2.0 server on a Unix socket.

Guarantees:
- The socket is created 0660 (configurable) in a 0750 directory, group-owned by the socket
  group, without a chmod-after-bind window: it is bound inside a private 0700 directory, its
  mode and group set there, then renamed into place.
- A stale socket left by a dead daemon is replaced; a live daemon's socket is never taken.
- Every connection is checked with SO_PEERCRED; refused peers get one `Unauthorized` error.
- Requests on one connection run concurrently; bad input gets an error reply, never a crash.
- This module is the one place that turns exceptions into JSON-RPC errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from wasupd import protocol
from wasupd.errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    Busy,
    ProtocolError,
    Unauthorized,
    WasupError,
)
from wasupd.events import Subscription
from wasupd.rpc.dispatch import Dispatcher, Method
from wasupd.rpc.peer import Authorizer, PeerCred, gid_of, peer_cred

log = structlog.get_logger("wasupd.rpc")

MAX_IN_FLIGHT_PER_CONNECTION = 64
# asyncio's default high-water mark of a transport's write buffer.
WRITE_HIGH_WATER = 64 * 1024
# A refused peer gets its error, then this long to send its request and hang up: closing at
# once would make the client's first write fail (EPIPE, or SIGPIPE for a plain script) before
# it could read why it was refused.
REFUSAL_LINGER = 2.0


@dataclass(eq=False)
class Connection:
    """One client connection: its writer and the tasks serving its requests."""

    peer: PeerCred
    writer: asyncio.StreamWriter
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    subscriptions: list[Subscription] = field(default_factory=list)

    def write_nowait(self, message: dict[str, Any]) -> None:
        """Put one message in the transport's buffer (whole, so writers never interleave)."""
        if not self.writer.is_closing():
            self.writer.write(protocol.encode(message))

    async def send(self, message: dict[str, Any]) -> None:
        """Write one message, waiting only when the peer reads slowly (the buffer is above the
        transport's high-water mark, which is when `drain` blocks); a vanished peer is not an
        error."""
        self.write_nowait(message)
        if self.writer.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run `coro` for this connection; it is cancelled when the connection ends."""
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def stream(self, sub: Subscription) -> None:
        """Forward `sub`'s events to this client as `event` notifications until either closes."""
        self.subscriptions.append(sub)

        async def pump() -> None:
            try:
                async for event in sub:
                    await self.send(protocol.notification("event", event))
                    if self.writer.is_closing():
                        break
            finally:
                sub.close()

        self.spawn(pump())


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler knows about its caller."""

    peer: PeerCred
    conn: Connection


def socket_is_live(path: Path, timeout: float = 1.0) -> bool:
    """True when something accepts connections on the Unix socket at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
            return False
        raise
    finally:
        probe.close()
    return True


def bind_socket(path: Path, *, mode: int, group: str) -> socket.socket:
    """Create the listening socket at `path` with `mode` and `group`, race-free (see module doc)."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    gid = gid_of(group) if group else None
    if group and gid is None:
        log.warning(
            "socket_group_missing",
            group=group,
            hint="only root and the daemon's user can use the socket; create the group"
            " (systemd-sysusers) or change daemon.socket_group",
        )
    _secure_dir(directory, gid)
    if path.exists() or path.is_symlink():
        if socket_is_live(path):
            raise Busy(
                f"another wasupd is already serving {path}; stop it first"
                " (systemctl stop wasupd) or use another daemon.socket",
                socket=str(path),
            )
        log.warning("stale_socket_replaced", socket=str(path))
    staging = directory / f".bind-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        _remove_staging(staging)
    staging.mkdir(mode=0o700)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        tmp = staging / "s"
        sock.bind(str(tmp))
        os.chmod(tmp, mode)
        if gid is not None:
            with contextlib.suppress(PermissionError):
                os.chown(tmp, -1, gid)
        os.replace(tmp, path)  # atomic: the socket appears with its final mode and group
        sock.listen(512)
    except BaseException:
        sock.close()
        raise
    finally:
        _remove_staging(staging)
    return sock


def _secure_dir(directory: Path, gid: int | None) -> None:
    """Make the socket directory 0750 (group-searchable) when we own it."""
    st = directory.stat()
    if st.st_uid != os.geteuid():
        return
    if gid is not None and st.st_gid != gid:
        with contextlib.suppress(PermissionError):
            os.chown(directory, -1, gid)
    os.chmod(directory, 0o750)


def _remove_staging(staging: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (staging / "s").unlink()
    with contextlib.suppress(FileNotFoundError):
        staging.rmdir()


class RpcServer:
    """Serves `dispatcher` on a Unix socket; `start()`, then `close()` for an ordered shutdown."""

    def __init__(
        self,
        *,
        path: Path,
        dispatcher: Dispatcher,
        authorizer: Authorizer,
        mode: int = 0o660,
        group: str = "",
        max_message_bytes: int = protocol.MAX_MESSAGE_BYTES,
    ) -> None:
        self.path = path
        self.dispatcher = dispatcher
        self.authorizer = authorizer
        self.mode = mode
        self.group = group
        self.max_message_bytes = max_message_bytes
        self.closing = False
        self.connections: set[Connection] = set()
        self.requests_served = 0
        self._server: asyncio.AbstractServer | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self.on_connection: Callable[[PeerCred], None] | None = None

    def subscriber_count(self) -> int:
        """Event subscriptions open on all connections."""
        return sum(len(c.subscriptions) for c in self.connections)

    async def start(self) -> None:
        """Bind the socket and start accepting connections."""
        sock = bind_socket(self.path, mode=self.mode, group=self.group)
        self._server = await asyncio.start_unix_server(
            self._on_client, sock=sock, limit=self.max_message_bytes + 1
        )

    @staticmethod
    async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """End our side of a refused connection, then discard what the peer still sends until it
        hangs up (at most `REFUSAL_LINGER` seconds)."""
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            writer.write_eof()
            async with asyncio.timeout(REFUSAL_LINGER):
                while await reader.read(65536):
                    pass

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conn_tasks.add(task)
            task.add_done_callback(self._conn_tasks.discard)
        peer = peer_cred(writer.get_extra_info("socket"))
        conn = Connection(peer, writer)
        try:
            if not self.authorizer.allows(peer):
                log.warning("peer_refused", pid=peer.pid, uid=peer.uid, gid=peer.gid)
                err = Unauthorized(
                    f"uid {peer.uid} may not use this socket; ask an administrator to add you"
                    " to the socket group or to daemon.allow_users"
                )
                await conn.send(protocol.error_message(None, err))
                await self._linger(reader, writer)
                return
            self.connections.add(conn)
            await self._read_loop(reader, conn)
            # The client may half-close after its last request: answer what is in flight.
            pending = [t for t in conn.tasks if t in self._in_flight]
            if pending:
                await asyncio.wait(pending, timeout=30)
        except ConnectionError:
            pass
        finally:
            self.connections.discard(conn)
            for sub in conn.subscriptions:
                sub.close()
            for t in list(conn.tasks):
                t.cancel()
            if conn.tasks:
                await asyncio.gather(*conn.tasks, return_exceptions=True)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _read_loop(self, reader: asyncio.StreamReader, conn: Connection) -> None:
        slots = asyncio.Semaphore(MAX_IN_FLIGHT_PER_CONNECTION)
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    log.info("partial_message_dropped", bytes=len(exc.partial), pid=conn.peer.pid)
                return
            except asyncio.LimitOverrunError:
                err = ProtocolError(
                    INVALID_REQUEST,
                    f"message too large: a request line may be at most {self.max_message_bytes}"
                    " bytes; connection closed",
                )
                await conn.send(protocol.error_message(None, err))
                log.warning("oversized_message", pid=conn.peer.pid, limit=self.max_message_bytes)
                return
            if not line.strip():
                continue
            call = self._answer_at_once(conn, line)
            if call is None:
                continue
            await slots.acquire()
            task = asyncio.ensure_future(self._serve(conn, *call))
            self._in_flight.add(task)
            conn.tasks.add(task)

            def done(t: asyncio.Task[None], conn: Connection = conn) -> None:
                self._in_flight.discard(t)
                conn.tasks.discard(t)
                slots.release()

            task.add_done_callback(done)

    def _answer_at_once(
        self, conn: Connection, line: bytes
    ) -> tuple[protocol.Request, Method, dict[str, Any]] | None:
        """Parse, look up and check `line`, and answer it now when that needs no waiting: a line
        that is not a valid request, an unknown method, bad params, a daemon shutting down, or a
        method that is a plain function (it never waits). Otherwise the checked call, for
        `_serve` in a task of its own. Answering inline saves a task and a loop iteration on the
        most frequent calls (status, health, list)."""
        req_id: int | str | None = None
        try:
            req = protocol.parse_request(line)
            req_id = req.id
            if self.closing:
                raise Busy("the daemon is shutting down; retry once it is back")
            method = self.dispatcher.lookup(req.method)
            kwargs = self.dispatcher.bind(method, req.params)
            if not method.inline:
                return req, method, kwargs
            # No log context bound here: these handlers do not log (an exception is logged
            # below with its rpc id), and binding costs as much as the handler itself.
            result = method.handler(Context(conn.peer, conn), **kwargs)
            self.requests_served += 1
            if req.is_notification:
                return None
            message = protocol.result_message(req.id, result)
        except WasupError as exc:
            if isinstance(exc, ProtocolError) and "id" in exc.data:
                req_id = exc.data["id"]
            message = protocol.error_message(req_id, exc)
        except Exception as exc:
            message = self._internal_error(req_id, exc)
        conn.write_nowait(message)
        return None

    async def _serve(
        self, conn: Connection, req: protocol.Request, method: Method, kwargs: dict[str, Any]
    ) -> None:
        """Run a checked call of a coroutine method and answer it (a notification gets none)."""
        try:
            with structlog.contextvars.bound_contextvars(rpc_id=req.id, method=req.method):
                result = await method.handler(Context(conn.peer, conn), **kwargs)
            self.requests_served += 1
            if not req.is_notification:
                await conn.send(protocol.result_message(req.id, result))
        except WasupError as exc:
            await conn.send(protocol.error_message(req.id, exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await conn.send(self._internal_error(req.id, exc))

    def _internal_error(self, req_id: int | str | None, exc: Exception) -> dict[str, Any]:
        """Log a handler's unexpected exception; the error message the caller gets."""
        log.exception("rpc_internal_error", rpc_id=req_id)
        err = ProtocolError(
            INTERNAL_ERROR, f"internal error ({type(exc).__name__}: {exc}); see the daemon log"
        )
        return protocol.error_message(req_id, err)

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Stop accepting; let in-flight requests finish within `drain_timeout`; close all."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=drain_timeout)
        for conn in list(self.connections):
            for sub in conn.subscriptions:
                sub.close()
            conn.writer.close()
        for task in list(self._conn_tasks):
            task.cancel()
        if self._conn_tasks:
            await asyncio.wait(set(self._conn_tasks), timeout=drain_timeout)
        with contextlib.suppress(FileNotFoundError):
            if self._server is not None and self.path.exists():
                self.path.unlink()
