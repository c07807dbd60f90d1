"""JSON-RPC 2.0 framing shared by the daemon and `wasupctl`.

One compact JSON object per line, UTF-8, `\\n`-terminated, at most `MAX_MESSAGE_BYTES` (the
daemon's limit is configurable; this is the default). This module is deliberately light: the
CLI imports it on every run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wasupd.errors import (
    INVALID_REQUEST,
    PARSE_ERROR,
    ProtocolError,
    WasupError,
)

MAX_MESSAGE_BYTES = 1024 * 1024
JSONRPC = "2.0"

# Method names are the contract (docs/rpc.md lists them; scripts depend on them).
METHODS = (
    "daemon.status",
    "daemon.health",
    "daemon.reload",
    "daemon.backup",
    "events.subscribe",
    "session.create",
    "session.list",
    "session.get",
    "session.start",
    "session.stop",
    "session.restart",
    "session.logout",
    "session.delete",
    "session.qr",
    "session.pair",
    "session.export",
    "session.import",
    "profiles.rekey",
    "message.send",
    "message.get",
    "message.cancel",
    "media.upload",
    "media.get",
    "outbox.list",
    "inbox.list",
    "contacts.list",
    "webhooks.list",
    "webhooks.retry",
    "campaign.create",
    "campaign.add",
    "campaign.discard",
    "campaign.start",
    "campaign.list",
    "campaign.get",
    "campaign.pause",
    "campaign.resume",
    "campaign.cancel",
    "campaign.report",
    "optout.list",
    "optout.add",
    "optout.rm",
    "metrics.get",
    "host.list",
    "host.drain",
    "session.move",
)


@dataclass(frozen=True, slots=True)
class Request:
    """A validated request. `id` is None for notifications (no reply is sent)."""

    method: str
    params: dict[str, Any]
    id: int | str | None
    is_notification: bool


def encode(message: dict[str, Any]) -> bytes:
    """One message as a compact JSON line (JSON never needs a raw newline)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def parse_request(line: bytes) -> Request:
    """Parse and validate one request line; raises `ProtocolError` with the JSON-RPC code."""
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(PARSE_ERROR, f"parse error: {exc}") from None
    if not isinstance(obj, dict):
        kind = "a batch" if isinstance(obj, list) else type(obj).__name__
        raise ProtocolError(
            INVALID_REQUEST, f"invalid request: expected one JSON object per line, got {kind}"
        )
    req_id = obj.get("id")
    if req_id is not None and (not isinstance(req_id, int | str) or isinstance(req_id, bool)):
        raise ProtocolError(INVALID_REQUEST, "invalid request: id must be a string or an integer")
    if obj.get("jsonrpc") != JSONRPC:
        raise ProtocolError(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"', id=req_id)
    method = obj.get("method")
    if not isinstance(method, str) or not method:
        raise ProtocolError(INVALID_REQUEST, "invalid request: method must be a string", id=req_id)
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError(
            INVALID_REQUEST,
            "invalid request: params must be an object (named parameters)",
            id=req_id,
        )
    return Request(method, params, req_id, "id" not in obj)


def result_message(req_id: int | str | None, result: Any) -> dict[str, Any]:
    """A success response."""
    return {"jsonrpc": JSONRPC, "id": req_id, "result": result}


def error_message(req_id: int | str | None, error: WasupError) -> dict[str, Any]:
    """An error response; `error.data.name` carries the stable error name."""
    code = error.instance_code if isinstance(error, ProtocolError) else error.code
    data = {k: v for k, v in error.data.items() if k != "id"}
    data["name"] = error.name
    return {
        "jsonrpc": JSONRPC,
        "id": req_id,
        "error": {"code": code, "message": error.message, "data": data},
    }


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """A server -> client notification (used for subscriptions)."""
    return {"jsonrpc": JSONRPC, "method": method, "params": params}
