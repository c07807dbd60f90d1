"""The narrow seams between the session runner and the outside world.

The runner (`wasupd.supervision.runner`) only talks to a browser through `Launcher` and
`BrowserHandle`, to WhatsApp through `PageDriver` (which includes `Linking`: logout and pairing by
code), to the profile through `ProfileHooks` and to time through `Clock`. Production
implementations live in `wasupd.supervision.process` / `wasupd.browser` / `wasupd.profiles`; unit
tests pass fakes, so every state transition has a fast test (supervisor's `DummyOptions` habit).
`SessionOptions` are the per-session overrides every factory of these seams is given.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from wasupd.addressing import Peer
from wasupd.config import BrowserBuild
from wasupd.watchdogs.usage import TreeUsage


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOptions:
    """Per-session overrides (None = use the config)."""

    phone: str | None = None
    proxy: str | None = None
    user_agent: str | None = None
    build: BrowserBuild | None = None
    extra_args: tuple[str, ...] = ()
    memory_mib: int | None = None
    memory_soft_mib: int | None = None
    fds: int | None = None
    processes: int | None = None
    allow_auto: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StopReport:
    """How a stop went: which escalation steps were needed and what had to be swept."""

    exit_status: int | None
    closed_via_devtools: bool = False
    sent_sigterm: bool = False
    sent_sigkill: bool = False
    swept_pids: list[int] = field(default_factory=list)
    duration: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LaunchRequest:
    """Everything needed to start one session's browser."""

    session: str
    profile_dir: Path
    executable: str
    args: list[str]
    url: str
    user_agent: str
    start_timeout: float
    env: dict[str, str] = field(default_factory=dict)


class BrowserHandle(Protocol):
    """A running Chromium tree that answers DevTools over the pipe and has one page."""

    @property
    def pid(self) -> int: ...

    @property
    def profile_dir(self) -> Path: ...

    @property
    def page(self) -> Any:
        """The pyppeteer `Page` the session lives in."""

    async def wait_exit(self) -> int:
        """Wait until the browser process has exited and been reaped; its exit status."""

    async def ping(self, timeout: float) -> None:
        """A DevTools round trip (`Browser.getVersion`); raises `BrowserError` past `timeout`."""

    async def stop(self, timeout: float, *, devtools: bool = True) -> StopReport:
        """DevTools close (skipped when `devtools` is false: a hung browser) -> SIGTERM group ->
        SIGKILL after `timeout` -> sweep -> reap -> verify."""

    def usage(self) -> TreeUsage:
        """Sample the tree's PSS, fds, process count and CPU (cheap; called every few seconds)."""

    def usage_is_quick(self) -> bool:
        """True when the next `usage()` is quick enough for the event loop (no /proc scan, no
        exact PSS); otherwise the caller runs it in a thread."""

    async def reclaim(self, timeout: float) -> TreeUsage:
        """Ask the browser to give memory back without restarting it (cache purge, critical
        memory pressure, forced GC of the page), then measure the tree exactly; the sample
        after. Raises `BrowserError` when DevTools fails or does not answer within `timeout`."""


class Launcher(Protocol):
    """Starts browsers. `launch` returns only once the browser is ready (page target exists)."""

    async def launch(self, request: LaunchRequest) -> BrowserHandle:
        """Start Chromium for `request`; raises `BrowserError` (and leaves nothing running) on failure."""


DriverKind = Literal[
    "state",  # WhatsApp state mapped to a session state: value = "qr" | "syncing" | "connected" | ...
    "qr",  # a QR payload: data = {"payload", "expires_at", "rotation"}
    "code",  # a pairing code: data = {"code", "expires_at"}
    # an inbound message: data = {"wa_id": serialized key, "id": bare id, "chat_id", "sender",
    #   "sender_pn", "sender_lid" (the sender's number and LID ids, None when unknown),
    #   "push_name", "body", "type", "t": unix seconds, "from_me": bool}
    "message",
    # an ack change of a message this device sent: data = {"wa_id": serialized key, "id": bare id,
    #   "chat_id", "chat_pn", "chat_lid" (None when unknown or a group),
    #   "ack": int (-1 error, 0 pending, 1 server, 2 delivered, 3 read, 4 played)}
    "ack",
    "logout",  # the phone unlinked this device: data = {"reason"}
    "failed",  # WhatsApp refuses this session: data = {"reason"} (TOS_BLOCK, DEPRECATED_VERSION...)
    "crash",  # the page or target went away ("Target closed")
    "activity",  # any page event, used only to feed the liveness clock
    # not the page's but the monitor's: a memory reclaim ran; data = {"before_mib", "after_mib",
    #   "soft_mib", "limit_mib", "duration"}
    "reclaim",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverReport:
    """One thing the page driver saw; the runner turns it into transitions and events."""

    kind: DriverKind
    value: str = ""
    data: dict[str, Any] = field(default_factory=dict)


Report = Callable[[DriverReport], None]


class Linking(Protocol):
    """How a page links and unlinks this device, besides showing a QR.

    A driver that cannot do one of these raises `BrowserError` saying so; the runner calls
    `logout` before stopping the browser of a requested logout, `session.pair` calls
    `request_pairing_code`.
    """

    async def logout(self) -> None:
        """Unlink this device: the page tells WhatsApp's server (a requested logout)."""

    async def request_pairing_code(self, phone: str, notify: bool = True) -> dict[str, Any]:
        """Link by phone number: `{"code", "expires_at"}`, also reported as a `code` report."""


class PageDriver(Linking, Protocol):
    """Drives WhatsApp Web in a ready browser page and reports what happens there."""

    async def attach(self, handle: BrowserHandle, report: Report) -> None:
        """Navigate to the configured URL, inject the page script and start reporting."""

    async def probe(self, timeout: float) -> None:
        """Liveness probe: page evaluates, Socket CONNECTED, a server round trip; raises on failure."""

    async def reload(self) -> None:
        """Reload the page (first recovery step after a failed probe)."""

    async def detach(self) -> None:
        """Stop reporting; called before the browser is stopped."""


class Clock(Protocol):
    """Time for the runner: monotonic for intervals, wall for records, sleep for waits."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ProfileHooks(Protocol):
    """One session's profile directory around a browser's life (sealed archives in production)."""

    async def prepare(self) -> Path:
        """Before launch: make the live profile dir (unsealing the archive, if any), remove provably
        stale Singleton* locks, take the daemon's own lock; return the dir. Raises `ProfileError` or
        `KeyUnavailable` when the archive cannot be opened (the session then goes `failed`)."""

    async def checkpoint(self) -> None:
        """While running: seal a consistent copy of the live profile without stopping the browser."""

    async def release(self, *, wipe: bool) -> None:
        """After the browser has exited: seal and remove the live dir, or with `wipe` (logout)
        delete both the live dir and the archive."""

    def sizes(self) -> dict[str, int]:
        """`{"live_bytes": ..., "sealed_bytes": ...}` for status, top and metrics."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundMedia:
    """A file to send: where its bytes are (the media store) and what WhatsApp is told."""

    path: Path
    kind: str  # document, image, video, audio, voice, sticker
    mimetype: str
    size: int
    filename: str
    caption: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMedia:
    """A received file the page downloaded into `dest`: its size and what the page said."""

    size: int
    mimetype: str | None
    filename: str | None


class MessagePort(Protocol):
    """What the outbox needs from a connected session's page (the WhatsApp driver implements it).

    Exactly-once sending: the outbox first asks `new_message_id()`, stores that id durably, then
    calls `send_text(..., message_id=id)`; after a crash it asks `message_exists(chat, id)` before
    sending again.
    """

    async def resolve_chat(self, to: str) -> str:
        """Chat id for a phone number (digits) or a chat id; `NotOnWhatsApp` when it does not exist."""

    async def new_message_id(self) -> str:
        """A fresh message id from the page (`WAWebMsgKey.newId()`)."""

    async def send_text(self, chat_id: str, body: str, *, message_id: str) -> str:
        """Send `body` with the given id; returns the serialized key. Raises on failure."""

    async def send_media(self, chat_id: str, media: OutboundMedia, *, message_id: str) -> str:
        """Upload `media` through the page and send it with the given id (its caption beside);
        returns the serialized key. Raises on failure."""

    async def download_media(self, wa_id: str, dest: Path) -> InboundMedia | None:
        """Download a received message's file (by its serialized key) into `dest`; None when
        WhatsApp no longer has it."""

    async def message_exists(self, chat_id: str, message_id: str) -> bool:
        """True when a message this device sent with that id is known to the page."""

    async def set_typing(self, chat_id: str, typing: bool) -> None:
        """Show or clear the "typing..." presence in the chat."""

    def peer(self, chat_id: str) -> Peer:
        """The person behind a chat `resolve_chat` returned: its number and LID as far as the
        page knows them (empty for a group)."""


class SessionDriver(PageDriver, MessagePort, Protocol):
    """What a session's driver is: it runs the page (`PageDriver`) and sends through it
    (`MessagePort`). The runner holds one; the session manager hands it to messaging."""


# TreeUsage is part of the seams (BrowserHandle.usage returns it); it lives with the watchdogs.
__all__ = [
    "BrowserHandle",
    "Clock",
    "DriverKind",
    "DriverReport",
    "InboundMedia",
    "LaunchRequest",
    "Launcher",
    "Linking",
    "MessagePort",
    "OutboundMedia",
    "PageDriver",
    "ProfileHooks",
    "Report",
    "SessionDriver",
    "SessionOptions",
    "StopReport",
    "SystemClock",
    "TreeUsage",
]
