"""Media bytes between the daemon and the page, in chunks through the DevTools pipe.

A file is never one giant DevTools message: outbound, it is read in `MEDIA_CHUNK` slices and
each is handed to the page as base64 in its own call (`mediaPut`); the page builds a File of
them and sends it down WhatsApp Web's media path. Inbound, the page downloads the file and
the daemon reads it out slice by slice (`mediaRead`) into the destination file. The page
keeps nothing after a transfer (`mediaDrop`, also when one fails).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
from pathlib import Path
from typing import Any, Protocol

from wasupd.addressing import Peer
from wasupd.browser import whatsapp as wa
from wasupd.errors import BrowserError
from wasupd.supervision.seams import InboundMedia, OutboundMedia

# One page call moves one chunk; the send itself (prepare, upload, server ack) gets this long
# plus a second per MiB.
SEND_TIMEOUT = 30.0


class Page(Protocol):
    """What a transfer needs of the driver."""

    async def call(self, fn: str, *args: Any, timeout: float = ..., step: str = "") -> Any:
        """`window.__wasupd.<fn>(*args)`, bounded; `BrowserError` on failure."""
        ...

    def peer(self, chat_id: str) -> Peer:
        """What the driver learnt of the person behind `chat_id`."""
        ...

    def sent_key(self, result: dict[str, Any]) -> str:
        """The key of a page send's result; `BrowserError` unless it was sent."""
        ...


async def send_media(page: Page, chat_id: str, media: OutboundMedia, message_id: str) -> str:
    """Push `media`'s bytes to the page, then send; the serialized key."""
    token = secrets.token_hex(8)
    await page.call("mediaOpen", token, step="opening a media upload")
    try:
        sent = await _push(page, token, media.path)
        if sent != media.size:
            raise BrowserError(f"the media file is {sent} bytes, not {media.size}: changed?")
        meta = {
            "kind": media.kind,
            "mimetype": media.mimetype,
            "filename": media.filename,
            "caption": media.caption,
            "size": media.size,
        }
        alt = page.peer(chat_id).alternate(chat_id)
        timeout = SEND_TIMEOUT + media.size / (1 << 20)
        result = await page.call(
            "sendMedia",
            chat_id,
            token,
            meta,
            message_id,
            alt,
            timeout=timeout,
            step="sending media",
        )
        return page.sent_key(result)
    finally:
        await _drop(page, token)


async def _push(page: Page, token: str, path: Path) -> int:
    """Hand the file to the page chunk by chunk; the bytes handed."""
    sent = 0
    while chunk := await asyncio.to_thread(_read_at, path, sent, wa.MEDIA_CHUNK):
        data = base64.b64encode(chunk).decode()
        await page.call("mediaPut", token, data, step="handing media to the page")
        sent += len(chunk)
    return sent


def _read_at(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size)


async def download_media(page: Page, wa_id: str, dest: Path) -> InboundMedia | None:
    """Have the page download `wa_id`'s file, then copy it out into `dest` (fsynced)."""
    token = secrets.token_hex(8)
    try:
        got = await page.call(
            "mediaFetch", wa_id, token, timeout=SEND_TIMEOUT, step="media download"
        )
        if not got:
            return None
        size = int(got["size"])
        fd = await asyncio.to_thread(os.open, dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for offset in range(0, size, wa.MEDIA_CHUNK):
                data = await page.call(
                    "mediaRead", token, offset, wa.MEDIA_CHUNK, step="media read"
                )
                await asyncio.to_thread(os.pwrite, fd, base64.b64decode(data), offset)
            await asyncio.to_thread(os.fsync, fd)
        finally:
            os.close(fd)
        return InboundMedia(size=size, mimetype=got.get("mimetype"), filename=got.get("filename"))
    finally:
        await _drop(page, token)


async def _drop(page: Page, token: str) -> None:
    """Let the page forget a transfer's bytes; a page that went away has already."""
    with contextlib.suppress(BrowserError):
        await page.call("mediaDrop", token, timeout=5.0, step="dropping media")
