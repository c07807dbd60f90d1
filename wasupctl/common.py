"""What every command shares: global options, the RPC client, output, and the one error path."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from wasupd.errors import EXIT_FAILURE, EXIT_USAGE, ProtocolError, WasupError

T = TypeVar("T")

# `--wide` of the commands that print a list as a table.
Wide = Annotated[
    bool, typer.Option("--wide", help="every column in full, even past the terminal's width")
]


@dataclass(slots=True)
class Options:
    """Global options (`wasupctl [--socket PATH] [--json] [--timeout S] COMMAND`)."""

    socket: Path
    json: bool
    timeout: float


def default_socket() -> Path:
    """`WASUP_SOCKET`, else this user's own daemon's socket, else the system daemon's."""
    env = os.environ.get("WASUP_SOCKET", "")
    if env:
        return Path(env)
    from wasupd.paths import client_socket

    return client_socket()


def opts(ctx: typer.Context) -> Options:
    """The global options stored by the root callback."""
    root = ctx.find_root()
    assert isinstance(root.obj, Options)
    return root.obj


def call(ctx: typer.Context, method: str, timeout: float | None = None, **params: Any) -> Any:
    """Call one RPC method; errors leave through `fail`."""
    from wasupd.rpc.client import Client

    o = opts(ctx)
    with Client(o.socket, timeout=o.timeout) as client:
        return guard(lambda: client.call(method, timeout=timeout, **params))


def table_width() -> int:
    """The width tables fit (`render.terminal_width`); a bad `COLUMNS` is the usage error."""
    from wasupctl.render import terminal_width

    return guard(terminal_width)


def guard(fn: Callable[[], T]) -> T:
    """Run `fn`, turning any `WasupError` into the one error exit."""
    try:
        return fn()
    except WasupError as exc:
        fail(exc)


def fail(exc: WasupError) -> NoReturn:
    """The single error path: one line on stderr, the exit status of the error class."""
    status = exc.exit_status
    if isinstance(exc, ProtocolError) and exc.instance_code == -32602:
        status = EXIT_USAGE
    print(f"wasupctl: {exc.message}", file=sys.stderr)
    raise typer.Exit(status or EXIT_FAILURE)


def die(message: str, status: int = EXIT_FAILURE) -> NoReturn:
    """Exit with `message` on stderr (client-side errors)."""
    print(f"wasupctl: {message}", file=sys.stderr)
    raise typer.Exit(status)


def emit_json(data: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def emit_ndjson(data: Any) -> None:
    """One compact JSON line on stdout, flushed (for streams)."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()
