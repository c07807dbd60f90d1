"""Received files: fetched through the session's page into the media store.

`[media] download` says which are fetched as they arrive ("none", "documents" or "all", up to
`max_download_mib`); any other is fetched when asked for (`media.get`), while its session is
connected and WhatsApp still has it. A fetched file is checked against the hash WhatsApp gave
before the inbox row says it is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from wasupd.config import MediaConfig
from wasupd.errors import BrowserError, InvalidArgument, InvalidState, MessageNotFound, WasupError
from wasupd.store.media import MediaStore
from wasupd.store.messages import MessageRepo
from wasupd.supervision.seams import MessagePort

log = structlog.get_logger("wasupd.messaging")


def wanted(cfg: MediaConfig, row: dict[str, Any]) -> bool:
    """Whether a newly received message's file is fetched at once under `cfg`."""
    kind, size = row.get("media_kind"), row.get("media_size")
    if kind is None or cfg.download == "none":
        return False
    if cfg.download == "documents" and kind != "document":
        return False
    return size is None or int(size) <= cfg.max_download_mib << 20


class Downloads:
    """Brings received files into the store (one fetch per message at a time)."""

    def __init__(
        self, *, repo: MessageRepo, store: MediaStore, port: Callable[[str], MessagePort | None]
    ) -> None:
        self.repo, self.store, self.port = repo, store, port
        self._locks: dict[int, asyncio.Lock] = {}

    async def fetch(self, row: dict[str, Any]) -> str:
        """The hash of the received message's file in the store, fetching it first if needed.
        InvalidArgument when it has no file, InvalidState when it cannot be fetched now."""
        if row.get("media_kind") is None:
            raise InvalidArgument(f"received message {row['id']} has no file (it is a text)")
        lock = self._locks.setdefault(int(row["id"]), asyncio.Lock())
        try:
            async with lock:
                row = await self.repo.inbound(int(row["id"]))  # stored meanwhile?
                digest = row.get("media_sha256")
                if row["media_stored"] and digest and self.store.has(digest):
                    return str(digest)
                return await self._download(row)
        finally:
            # Forgotten once free; a caller that was already waiting on it may then overlap a
            # new one, which only fetches the same bytes twice (adopt keeps one copy).
            if not lock.locked():
                self._locks.pop(int(row["id"]), None)

    async def _download(self, row: dict[str, Any]) -> str:
        session = str(row["session"])
        port = self.port(session)
        if port is None:
            raise InvalidState(
                f"the file of message {row['id']} is not stored and session {session} is not"
                " connected to fetch it: start the session, then ask again",
                session=session,
            )
        scratch = self.store.scratch()
        try:
            got = await port.download_media(str(row["wa_id"]), scratch)
            if got is None:
                raise MessageNotFound(
                    f"WhatsApp no longer has the file of message {row['id']} (expired)"
                )
            stored = await asyncio.to_thread(self.store.adopt, scratch)
        finally:
            scratch.unlink(missing_ok=True)
        expected = row.get("media_sha256")
        if expected and stored.sha256 != expected:
            raise BrowserError(
                f"the file of message {row['id']} arrived with another hash than WhatsApp gave"
            )
        await self.repo.media_stored(int(row["id"]), stored.sha256)
        log.info("media_fetched", session=session, inbox_id=row["id"], size=stored.size)
        return stored.sha256

    async def on_arrival(self, cfg: MediaConfig, row: dict[str, Any]) -> None:
        """Fetch a newly received file if `cfg` wants it; a failure is logged (the file can
        still be asked for later)."""
        if not wanted(cfg, row):
            return
        try:
            await self.fetch(row)
        except Exception as exc:  # a bad download must not end the daemon's report handling
            why = exc.message if isinstance(exc, WasupError) else repr(exc)
            log.warning(
                "media_fetch_failed", session=row.get("session"), inbox_id=row["id"], error=why
            )
