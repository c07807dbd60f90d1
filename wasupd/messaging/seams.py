"""What messaging needs from the rest of the daemon, named as protocols.

Messaging sends through connected sessions and reads a few per-session facts; it does not need
the session manager, its runners or their drivers. `SessionDirectory` is that need; the session
manager implements it, and unit tests implement it with a dict.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from wasupd.supervision.seams import MessagePort
from wasupd.supervision.states import SessionState


class SessionDirectory(Protocol):
    """The sessions as messaging sees them."""

    def names(self) -> Iterable[str]:
        """Every session's name."""
        ...

    def state_of(self, name: str) -> SessionState | None:
        """The session's state; None for an unknown name."""
        ...

    def connected_anywhere(self) -> Iterable[str]:
        """Sessions connected on this host or, in a fleet, on another (their owner sends
        what is queued for them): the sessions `auto` chooses among."""
        ...

    def port(self, name: str) -> MessagePort | None:
        """The session's page when it is connected, else None."""
        ...

    def options_of(self, name: str) -> dict[str, Any]:
        """The session's stored options (`send`, `webhook_url`, ...); {} for an unknown name."""
        ...

    def linked_at(self, name: str) -> float | None:
        """When the number was first linked (its age sets the day cap); None if never."""
        ...
