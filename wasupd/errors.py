"""The error tree shared by the daemon and the CLI.

Every error a user can see is a `WasupError` subclass with a stable `name` (sent as
`error.data.name` over JSON-RPC), a JSON-RPC `code` and the CLI exit status it maps to.
The daemon translates these to JSON-RPC errors in one place (`wasupd.rpc.server`), and
`wasupctl` translates them back to exit statuses in one place (`wasupctl.app`).
"""

from __future__ import annotations

from typing import Any, ClassVar

# CLI exit statuses (listed in docs/cli.md; scripts depend on them).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4
EXIT_WRONG_STATE = 5
EXIT_TIMEOUT = 6

# JSON-RPC 2.0 protocol error codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


class WasupError(Exception):
    """Root of every error wasupd reports on purpose."""

    name: ClassVar[str] = "WasupError"
    code: ClassVar[int] = -32000
    exit_status: ClassVar[int] = EXIT_FAILURE

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class ConfigError(WasupError):
    """The configuration file is unreadable or a key has a bad value; names the key path."""

    name = "ConfigError"
    code = -32001
    exit_status = EXIT_USAGE


class SessionNotFound(WasupError):
    """A request named a session that does not exist."""

    name = "SessionNotFound"
    code = -32002
    exit_status = EXIT_NOT_FOUND


class SessionExists(WasupError):
    """`session.create` or `session.import` named a session that already exists."""

    name = "SessionExists"
    code = -32003
    exit_status = EXIT_WRONG_STATE


class InvalidState(WasupError):
    """The session is in a state that does not allow the request (start a running one...)."""

    name = "InvalidState"
    code = -32004
    exit_status = EXIT_WRONG_STATE


class RateLimited(WasupError):
    """A per-session limit (QR generations per hour, sends) refuses the request for now."""

    name = "RateLimited"
    code = -32005
    exit_status = EXIT_FAILURE


class Unauthorized(WasupError):
    """The peer's uid/gid (SO_PEERCRED) is not allowed on the control socket."""

    name = "Unauthorized"
    code = -32006
    exit_status = EXIT_FAILURE


class Busy(WasupError):
    """The daemon refuses new work now: shutting down, max_sessions reached, host short of memory."""

    name = "Busy"
    code = -32007
    exit_status = EXIT_FAILURE


class InvalidArgument(WasupError):
    """A parameter has the right type but a bad value (session name, phone number, format)."""

    name = "InvalidArgument"
    code = -32008
    exit_status = EXIT_USAGE


class NotOnWhatsApp(WasupError):
    """The recipient number is not registered on WhatsApp."""

    name = "NotOnWhatsApp"
    code = -32009
    exit_status = EXIT_FAILURE


class MessageNotFound(WasupError):
    """`message.get` or a cancel named a message id that does not exist."""

    name = "MessageNotFound"
    code = -32010
    exit_status = EXIT_NOT_FOUND


class Timeout(WasupError):
    """An operation did not finish within its bound."""

    name = "Timeout"
    code = -32011
    exit_status = EXIT_TIMEOUT


class BrowserError(WasupError):
    """Chromium could not be started, did not answer, or its page went away."""

    name = "BrowserError"
    code = -32012
    exit_status = EXIT_FAILURE


class ProfileError(WasupError):
    """A sealed profile archive is damaged, truncated, or sealed under an unknown key."""

    name = "ProfileError"
    code = -32013
    exit_status = EXIT_FAILURE


class KeyUnavailable(WasupError):
    """The profile key is missing, unreadable, or has permissions looser than 0600."""

    name = "KeyUnavailable"
    code = -32014
    exit_status = EXIT_FAILURE


class StoreError(WasupError):
    """The database cannot be used (for example it was written by a newer wasupd)."""

    name = "StoreError"
    code = -32015
    exit_status = EXIT_FAILURE


class StaleLease(StoreError):
    """A fleet host tried to change a session whose lease it no longer holds (refused).

    Its fencing token is stale or the lease expired; the change is rolled back and the host
    must stop that session."""

    name = "StaleLease"


class DaemonUnreachable(WasupError):
    """The CLI could not connect to the control socket (raised client-side only)."""

    name = "DaemonUnreachable"
    code = -32016
    exit_status = EXIT_UNREACHABLE


class CampaignNotFound(WasupError):
    """A request named a campaign that does not exist."""

    name = "CampaignNotFound"
    code = -32017
    exit_status = EXIT_NOT_FOUND


class CampaignExists(WasupError):
    """`campaign.create` named a campaign that was already started (it is never re-sent)."""

    name = "CampaignExists"
    code = -32018
    exit_status = EXIT_WRONG_STATE


class ProtocolError(WasupError):
    """A JSON-RPC protocol error (parse, invalid request, method, params); `code` set per instance."""

    name = "ProtocolError"
    code = INVALID_REQUEST
    exit_status = EXIT_FAILURE

    def __init__(self, code: int, message: str, **data: Any) -> None:
        super().__init__(message, **data)
        self.instance_code = code


def all_domain_errors() -> list[type[WasupError]]:
    """Every concrete error class, for the name -> class mapping used by the client."""
    out: list[type[WasupError]] = []
    stack: list[type[WasupError]] = [WasupError]
    while stack:
        cls = stack.pop()
        out.append(cls)
        stack.extend(cls.__subclasses__())
    return out


def error_class_for(name: str) -> type[WasupError]:
    """The class whose stable `name` is `name`; `WasupError` for unknown names."""
    for cls in all_domain_errors():
        if cls.name == name:
            return cls
    return WasupError
