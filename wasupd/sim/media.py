"""The simulated media servers: uploads kept by hash, downloads by direct path (§4g).

WhatsApp Web uploads a file (encrypted with a fresh media key) to a media host and sends only
a reference in the message: the direct path, the hashes and the key. The recipient's page
downloads from the direct path and checks the hash. Here the bytes are kept in memory in
plain (no encryption is modelled: `encFilehash` is the hash of the same bytes), so a test can
compare what arrived with what was sent, byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

# The kinds a message can have (WhatsApp Web's Msg.type for media); `ptt` is a voice note.
KINDS = ("image", "video", "audio", "ptt", "document", "sticker")
# The largest upload the simulated media host takes (WhatsApp's own limits are the client's).
MAX_UPLOAD = 2 << 30


@dataclass(frozen=True, slots=True)
class Blob:
    """One uploaded file: its bytes, SHA-256 (hex) and the path a download names."""

    data: bytes
    sha256: str
    direct_path: str

    @property
    def filehash(self) -> str:
        """WhatsApp's `filehash`: base64 of the SHA-256 of the plain bytes."""
        return base64.b64encode(bytes.fromhex(self.sha256)).decode()


class MediaHost:
    """Uploaded files by SHA-256; an upload of the same bytes again keeps one copy."""

    def __init__(self) -> None:
        self.blobs: dict[str, Blob] = {}

    def put(self, data: bytes) -> Blob:
        """Keep `data`; its blob (the same one for the same bytes)."""
        digest = hashlib.sha256(data).hexdigest()
        blob = self.blobs.get(digest)
        if blob is None:
            blob = Blob(data, digest, f"/v/t62.7118-24/{digest}.enc")
            self.blobs[digest] = blob
        return blob

    def by_path(self, direct_path: str) -> Blob | None:
        """The blob a direct path names, or None."""
        digest = direct_path.rsplit("/", 1)[-1].removesuffix(".enc")
        blob = self.blobs.get(digest)
        return blob if blob is not None and blob.direct_path == direct_path else None

    def entry(self, blob: Blob) -> dict[str, Any]:
        """What the upload answers (the page's `mediaEntry`)."""
        return {
            "directPath": blob.direct_path,
            "filehash": blob.filehash,
            "encFilehash": blob.filehash,  # no encryption modelled: the same bytes
            "size": len(blob.data),
        }


def media_record(
    blob: Blob, kind: str, mimetype: str, filename: str, caption: str
) -> dict[str, Any]:
    """A message's media as the server routes it (`Message.media`)."""
    if kind not in KINDS:
        raise ValueError(f"media kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return {
        "kind": kind,
        "mimetype": mimetype or "application/octet-stream",
        "size": len(blob.data),
        "sha256": blob.sha256,
        "filehash": blob.filehash,
        "direct_path": blob.direct_path,
        "filename": filename,
        "caption": caption,
    }


def decode_b64(value: str, what: str) -> bytes:
    """Base64 from a control call; ValueError naming `what` when it is not base64."""
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError:
        raise ValueError(f"{what} must be base64-encoded bytes") from None
