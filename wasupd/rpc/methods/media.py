"""`media.upload` and `media.get`: files through the control socket, in base64 chunks."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

from wasupd.errors import InvalidArgument, MessageNotFound
from wasupd.messaging.downloads import Downloads
from wasupd.messaging.media import MAX_CHUNK, MediaIntake
from wasupd.rpc.server import Context
from wasupd.store.media import MediaStore
from wasupd.store.messages import MessageRepo


class MediaMethods:
    """Uploading a file to send; reading the file of a message (sent or received)."""

    def __init__(
        self, *, intake: MediaIntake, repo: MessageRepo, downloads: Downloads, store: MediaStore
    ) -> None:
        self.intake, self.repo, self.downloads, self.store = intake, repo, downloads, store

    async def upload(
        self, ctx: Context, data: str, offset: int = 0, token: str | None = None
    ) -> dict[str, Any]:
        """Receive one base64 chunk of a file to send (at most 768 KiB of bytes), at `offset`;
        the first call goes without `token` and answers one for the next chunks and for
        `message.send(file=token)`. A file over WhatsApp's largest limit is refused."""
        return await self.intake.upload(data, offset, token)

    async def get(
        self, ctx: Context, id: str, offset: int = 0, size: int = MAX_CHUNK
    ) -> dict[str, Any]:
        """A base64 chunk of a message's file: an outbox id (`m...`) or a received message's
        inbox id. A received file not yet in the media store is fetched through its session's
        page first (the session must be connected). Answers `data`, `offset`, `total`,
        `done`, and the file's `sha256`, `kind`, `mime`, `name`."""
        digest, meta = await self._file_of(id)
        path = self.store.path(digest)
        if not path.is_file():
            raise MessageNotFound(f"the file of message {id} is no longer kept (retention)")
        size = max(1, min(size, MAX_CHUNK))
        data, total = await asyncio.to_thread(_read_at, path, offset, size)
        return {
            "data": base64.b64encode(data).decode(),
            "offset": offset,
            "total": total,
            "done": offset + len(data) >= total,
            "sha256": digest,
            **meta,
        }

    async def _file_of(self, mid: str) -> tuple[str, dict[str, Any]]:
        if mid.isdigit():
            row = await self.repo.inbound(int(mid))
            digest = await self.downloads.fetch(row)
            return digest, {
                "kind": row["media_kind"],
                "mime": row["media_mime"],
                "name": row["media_name"],
            }
        msg = await self.repo.get(mid)
        if msg.media_sha256 is None:
            raise InvalidArgument(f"message {mid} has no file (it is a text)")
        return msg.media_sha256, {
            "kind": msg.media_kind,
            "mime": msg.media_mime,
            "name": msg.media_name,
        }


def _read_at(path: Path, offset: int, size: int) -> tuple[bytes, int]:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size), fh.seek(0, 2)
