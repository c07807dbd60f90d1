"""Files to send: chunked uploads, the kind from the content, WhatsApp's limits, the store.

A file reaches the daemon in base64 chunks (`media.upload`, like `session.import`), into
`StateLayout.uploads`; `message.send` then takes it (`accept`): the size is checked against
WhatsApp's limit for its kind and the kind against its content (the `filetype` library reads
the magic bytes, never the name) before anything is queued, and the file moves into the
content-addressed store, so the caller may delete its own copy at once.
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
import os
import secrets
from pathlib import Path

import filetype

from wasupd.browser import whatsapp as wa
from wasupd.errors import InvalidArgument
from wasupd.store.media import MediaStore
from wasupd.store.messages import MediaRef

KINDS = tuple(wa.MEDIA_TYPES)  # document, image, video, audio, voice, sticker
LARGEST = max(wa.MEDIA_LIMITS.values())
MAX_CHUNK = 768 * 1024
HEAD = 8192  # what the file-type detection reads


def mib(n: int) -> str:
    """A limit in words: `16 MiB`, `500 KiB`."""
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def _a(kind: str) -> str:
    """`an image`, `a video`."""
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def check_size(kind: str, size: int) -> None:
    """InvalidArgument naming the limit when `size` is over WhatsApp's for `kind`."""
    limit = wa.MEDIA_LIMITS[kind]
    if size > limit:
        hint = " (send it --as document)" if kind != "document" and size <= LARGEST else ""
        raise InvalidArgument(
            f"the file is {size} bytes: over WhatsApp's limit for {_a(kind)}, {mib(limit)}{hint}"
        )
    if size == 0:
        raise InvalidArgument("the file is empty: nothing to send")


def detect(head: bytes, filename: str) -> str:
    """The MIME type of a file from its first bytes; for content no signature names (text,
    CSV...) the file name's, else application/octet-stream."""
    found = filetype.guess_mime(head)
    if found:
        return str(found)
    guessed, _ = mimetypes.guess_type(filename) if filename else (None, None)
    return guessed or "application/octet-stream"


def choose_kind(mime: str, requested: str | None) -> str:
    """The kind to send as: `requested` (checked against the content), else from the content."""
    if requested is None:
        return wa.AUTO_KINDS.get(mime, "document")
    if requested not in KINDS:
        raise InvalidArgument(f"--as must be one of {', '.join(KINDS)}, not {requested!r}")
    allowed = wa.MEDIA_MIMES.get(requested)
    if allowed is not None and mime not in allowed:
        raise InvalidArgument(
            f"the file is {mime}; WhatsApp sends only {', '.join(allowed)} as {_a(requested)}:"
            " send it --as document"
        )
    return requested


class MediaIntake:
    """Uploads in progress and their hand-over to the store (`media.upload`, `message.send`)."""

    def __init__(self, uploads: Path, store: MediaStore) -> None:
        self.uploads, self.store = uploads, store

    def _part(self, token: str) -> Path:
        if not (8 <= len(token) <= 64 and token.isalnum()):
            raise InvalidArgument("bad upload token: use the one media.upload answered")
        return self.uploads / f"{token}.part"

    async def upload(self, data: str, offset: int, token: str | None) -> dict[str, object]:
        """Append one base64 chunk at `offset` (the first without a token); the token and the
        bytes received. A file over WhatsApp's largest limit is refused as it grows."""
        token = token or secrets.token_hex(8)
        part = self._part(token)
        try:
            chunk = base64.b64decode(data, validate=True)
        except ValueError:
            raise InvalidArgument("upload data is not valid base64") from None
        if len(chunk) > MAX_CHUNK:
            raise InvalidArgument(f"upload chunks are at most {MAX_CHUNK} bytes")
        if offset + len(chunk) > LARGEST:
            raise InvalidArgument(
                f"the file is over {mib(LARGEST)}, WhatsApp's largest limit (for a document)"
            )
        await asyncio.to_thread(self._write_at, part, offset, chunk)
        return {"token": token, "received": offset + len(chunk)}

    def _write_at(self, part: Path, offset: int, data: bytes) -> None:
        self.uploads.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size != offset:
                raise InvalidArgument(
                    f"upload chunk at offset {offset} does not follow the received bytes"
                )
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    async def accept(self, token: str, kind: str | None, filename: str) -> MediaRef:
        """Check the uploaded file (size limit, kind from its content) and move it into the
        store; InvalidArgument saying which check failed, and nothing is kept then."""
        part = self._part(token)
        if not part.is_file():
            raise InvalidArgument(f"no upload {token}: upload the file first (media.upload)")
        try:
            size = part.stat().st_size
            check_size("document" if kind is None else kind, size)
            mime = detect(await asyncio.to_thread(_head, part), filename)
            chosen = choose_kind(mime, kind)
            check_size(chosen, size)
        except InvalidArgument:
            part.unlink(missing_ok=True)
            raise
        scratch = self.store.scratch()
        os.replace(part, scratch)  # onto the store's file system before hashing
        stored = await asyncio.to_thread(self.store.adopt, scratch)
        return MediaRef(sha256=stored.sha256, kind=chosen, mime=mime, size=size, name=filename)


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(HEAD)
