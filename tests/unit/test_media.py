"""Files to send and the media store: kinds from the content, WhatsApp's limits, chunked
uploads, content addressing, and retention of files no message needs (real files, real
SQLite)."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path

import pytest

from tests.helpers.postgres import StoreTarget
from wasupd.errors import InvalidArgument
from wasupd.messaging.media import MediaIntake, check_size, choose_kind, detect
from wasupd.store import retention
from wasupd.store.media import PRUNE_GRACE, MediaStore

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"


def test_the_kind_comes_from_the_content_not_the_name() -> None:
    """A JPEG named .pdf is an image; a PDF named .jpg a document; text without a signature
    takes its MIME type from the name and is a document; --as is checked against the content."""
    assert detect(JPEG + bytes(100), "report.pdf") == "image/jpeg"
    assert detect(b"%PDF-1.7\n" + bytes(100), "photo.jpg") == "application/pdf"
    assert detect(b"a,b\n1,2\n", "data.csv") == "text/csv"
    assert detect(b"\x00\x01", "") == "application/octet-stream"
    assert choose_kind("image/jpeg", None) == "image"
    assert choose_kind("application/pdf", None) == "document"
    assert choose_kind("image/webp", None) == "document"  # a sticker only when asked for
    assert choose_kind("image/jpeg", "document") == "document"
    assert choose_kind("audio/ogg", "voice") == "voice"
    with pytest.raises(
        InvalidArgument, match="only image/webp as a sticker: send it --as document"
    ):
        choose_kind("image/jpeg", "sticker")
    with pytest.raises(InvalidArgument, match="--as must be one of document, image"):
        choose_kind("image/jpeg", "gif")


def test_limits_name_the_kind_and_the_size() -> None:
    """16 MiB is the most for an image, one byte more is refused saying so (with the way out);
    documents go to 100 MiB; an empty file is refused."""
    check_size("image", 16 << 20)
    with pytest.raises(
        InvalidArgument, match=r"limit for an image, 16 MiB \(send it --as document\)"
    ):
        check_size("image", (16 << 20) + 1)
    check_size("document", 100 << 20)
    with pytest.raises(InvalidArgument, match="limit for a document, 100 MiB$"):
        check_size("document", (100 << 20) + 1)
    with pytest.raises(InvalidArgument, match="limit for a sticker, 500 KiB"):
        check_size("sticker", 600 << 10)
    with pytest.raises(InvalidArgument, match="empty"):
        check_size("document", 0)


async def test_an_upload_in_chunks_lands_once_in_the_store(tmp_path: Path) -> None:
    """Chunks in order make the file; a gap is refused; accepting moves it into the store
    under its SHA-256, and the same bytes again keep one copy."""
    store = MediaStore(tmp_path / "media")
    intake = MediaIntake(tmp_path / "uploads", store)
    data = JPEG + os.urandom(2_000_000)
    refs = []
    for _ in range(2):
        first = await intake.upload(base64.b64encode(data[:700_000]).decode(), 0, None)
        token = str(first["token"])
        with pytest.raises(InvalidArgument, match="does not follow"):
            await intake.upload(base64.b64encode(b"x").decode(), 5, token)
        for off in range(700_000, len(data), 700_000):
            await intake.upload(base64.b64encode(data[off : off + 700_000]).decode(), off, token)
        refs.append(await intake.accept(token, None, "photo.jpg"))
    digest = hashlib.sha256(data).hexdigest()
    assert refs[0] == refs[1]
    assert (refs[0].sha256, refs[0].kind, refs[0].mime, refs[0].size) == (
        digest,
        "image",
        "image/jpeg",
        len(data),
    )
    assert store.path(digest).read_bytes() == data and list(store.hashes()) == [digest]
    assert not list((tmp_path / "uploads").iterdir())


async def test_a_refused_file_is_not_kept(tmp_path: Path) -> None:
    """An upload refused at accept (a JPEG as a sticker) leaves nothing behind; an unknown
    token says to upload first."""
    intake = MediaIntake(tmp_path / "uploads", MediaStore(tmp_path / "media"))
    token = str(
        (await intake.upload(base64.b64encode(JPEG + bytes(10)).decode(), 0, None))["token"]
    )
    with pytest.raises(InvalidArgument, match="as a sticker"):
        await intake.accept(token, "sticker", "")
    assert not list((tmp_path / "uploads").iterdir())
    with pytest.raises(InvalidArgument, match="upload the file first"):
        await intake.accept(token, None, "")


async def test_retention_removes_files_no_message_needs(
    tmp_path: Path, store_target: StoreTarget
) -> None:
    """Files named by an outbox row or by a fetched inbox row stay; others older than the
    grace go, a young one stays (a send may not have committed yet), and so do stale uploads."""
    store = MediaStore(tmp_path / "media")
    digests = []
    for i in range(4):
        tmp = store.scratch()
        tmp.write_bytes(f"file {i}".encode())
        digests.append(store.adopt(tmp).sha256)
    old = time.time() - PRUNE_GRACE - 10
    for d in digests[:3]:
        os.utime(store.path(d), (old, old))
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "abandoned.part").write_bytes(b"x")
    os.utime(uploads / "abandoned.part", (old - retention.DAY, old - retention.DAY))
    async with await store_target.open() as db:
        await db.execute(
            "INSERT INTO outbox (id, from_spec, chat_id, body, state, created_at, updated_at,"
            " media_sha256) VALUES ('m1', 'auto', 'c', '', 'sent', 0, 0, ?)",
            (digests[0],),
        )
        for n, (digest, stored) in enumerate(((digests[1], 1), (digests[2], 0))):
            await db.execute(
                "INSERT INTO inbox (session, wa_id, chat_id, sender, body, t, received_at,"
                " media_sha256, media_stored) VALUES ('s', ?, 'c', 'x', '', 0, 0, ?, ?)",
                (f"w{n}", digest, stored),
            )
        assert await retention.prune_media(db, store, uploads) == 1
    assert sorted(store.hashes()) == sorted([digests[0], digests[1], digests[3]])
    assert not (uploads / "abandoned.part").exists()
