"""The driver's media path with real Chromium against the simulator: files go out in chunks
through WhatsApp Web's prepare/upload/send steps and arrive byte for byte; received files are
downloaded through the page."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path

from tests.integration.test_driver_linking import A, B, rig
from tests.integration.test_driver_messaging import until_received
from wasupd.supervision.seams import OutboundMedia


def media_file(tmp_path: Path, name: str, data: bytes) -> Path:
    """`data` written as `name` under tmp_path."""
    path = tmp_path / name
    path.write_bytes(data)
    return path


async def test_a_document_arrives_byte_for_byte_with_its_caption(tmp_path: Path) -> None:
    """A 1.5 MiB document (three chunks through the pipe) reaches the recipient with the same
    sha256, its file name, MIME type and caption, under the id we chose."""
    data = os.urandom(3 << 19)
    path = media_file(tmp_path, "report.pdf", data)
    media = OutboundMedia(
        path=path,
        kind="document",
        mimetype="application/pdf",
        size=len(data),
        filename="report.pdf",
        caption="last night's report",
    )
    async with rig(tmp_path) as r:
        await r.linked(A)
        async with asyncio.timeout(30):
            chat = await r.driver.resolve_chat(B)
            mid = await r.driver.new_message_id()
            key = await r.driver.send_media(chat, media, message_id=mid)
        assert key == f"true_{chat}_{mid}"
        got = (await until_received(r, B, 1))[0]
        assert got["id"] == mid and got["kind"] == "document" and got["type"] == "document"
        assert got["sha256"] == hashlib.sha256(data).hexdigest() and got["size"] == len(data)
        assert got["caption"] == "last night's report" and got["filename"] == "report.pdf"
        assert got["mimetype"] == "application/pdf"


async def test_a_received_image_is_reported_and_downloaded(tmp_path: Path) -> None:
    """An image from a phone is reported with its kind, size, hash and caption, and the page
    downloads it (chunked out) with the same bytes."""
    data = os.urandom(700_000)
    digest = hashlib.sha256(data).digest()
    media = {"data": base64.b64encode(data).decode(), "kind": "image", "mimetype": "image/jpeg"}
    async with rig(tmp_path) as r:
        await r.linked(A)
        await r.sim.control("inject", {"to": A, "from": B, "text": "the delivery", "media": media})
        msg = (await r.reports.first("message")).data
        assert msg["type"] == "image" and msg["body"] == "the delivery"
        assert msg["size"] == len(data) and msg["mimetype"] == "image/jpeg"
        assert base64.b64decode(msg["filehash"]) == digest
        dest = tmp_path / "got"
        async with asyncio.timeout(30):
            found = await r.driver.download_media(msg["wa_id"], dest)
        assert found is not None and found.size == len(data)
        assert hashlib.sha256(dest.read_bytes()).digest() == digest
