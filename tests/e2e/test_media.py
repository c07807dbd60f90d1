"""End to end, files: `wasupctl send --file` and `media get` against daemon + Chromium +
simulator; each kind arrives byte for byte, limits refuse before queueing, kill -9 sends once,
received files are fetched into the media store."""

from __future__ import annotations

import base64
import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import Any

from tests.e2e.test_linking import ALICE, BOB, ctl, link_by_qr, start
from tests.e2e.test_outbox import send_retrying
from tests.e2e.test_whatsapp import state
from tests.helpers.daemon import DaemonProcess
from tests.helpers.sim import SimProcess
from tests.helpers.waiting import eventually
from tests.helpers.webhooks import SECRET, Receiver

# The first bytes that make a file what it is (what `filetype` reads), then random bytes.
HEADS = {
    "document": (b"%PDF-1.7\n", "report.pdf"),
    "image": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "photo.jpg"),
    "video": (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", "clip.mp4"),
    "audio": (b"ID3\x03\x00", "song.mp3"),
    "voice": (b"OggS\x00\x02" + bytes(22) + b"OpusHead", "note.ogg"),
    "sticker": (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "sticker.webp"),
}
SIM_KIND = {"voice": "ptt"}  # WhatsApp's name for a voice note


def media_bytes(kind: str, size: int) -> bytes:
    """`size` bytes that `filetype` reads as a `kind` file."""
    head = HEADS[kind][0]
    return head + os.urandom(size - len(head))


def received(sim: SimProcess, phone: str) -> list[dict[str, Any]]:
    """Every message that reached `phone`."""
    return list(sim.call("received", phone=phone))


def linked(
    daemon_factory: Any, sim_factory: Any, tmp: Path, **sections: Any
) -> tuple[DaemonProcess, SimProcess]:
    """A daemon with session `alice` connected (pacing off), and the simulator."""
    sim = sim_factory(time_factor=0.2, accounts=[ALICE, BOB])
    d = start(daemon_factory, sim, send={"pacing": False}, **sections)
    link_by_qr(d, sim, "alice", ALICE, tmp)
    return d, sim


def test_each_kind_arrives_byte_identical(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """A document, an image, a video, an audio file, a voice note and a sticker each reach the
    phone with the sha256 of the file sent, as that kind, with caption and file name; the
    caller's file is deleted as soon as `send` returns (the daemon has its own copy); an image
    from stdin works too."""
    d, sim = linked(daemon_factory, sim_factory, tmp_path)
    sent: dict[str, str] = {}
    for kind, (_, name) in HEADS.items():
        data = media_bytes(kind, 300_000 if kind != "sticker" else 60_000)
        path = tmp_path / name
        path.write_bytes(data)
        args = ["send", "--from", "alice", BOB, "--file", str(path), "--caption", f"a {kind}"]
        if kind in ("voice", "sticker"):
            args += ["--as", kind]  # only these are not what the content says by itself
        out = ctl(d, *args)
        assert out.returncode == 0, out.stderr
        path.unlink()
        sent[kind] = hashlib.sha256(data).hexdigest()
    piped = media_bytes("image", 200_000)
    out = ctl(
        d, "send", "--from", "alice", BOB, "--file", "-", "--filename", "pipe.jpg", stdin=piped
    )
    assert out.returncode == 0, out.stderr
    eventually(lambda: len(received(sim, BOB)) >= 7, 60, "7 files at the phone")
    got = {m["caption"]: m for m in received(sim, BOB)}
    for kind, digest in sent.items():
        m = got[f"a {kind}"]
        assert (m["kind"], m["sha256"]) == (SIM_KIND.get(kind, kind), digest), m
    assert got["a document"]["filename"] == "report.pdf"
    assert got["a document"]["mimetype"] == "application/pdf"
    assert got[""]["sha256"] == hashlib.sha256(piped).hexdigest() and got[""]["kind"] == "image"
    outbox = d.call("outbox.list", session="alice", limit=20)
    assert {m["media_kind"] for m in outbox} == set(HEADS)


def test_a_16_mib_image_arrives_and_one_over_the_limit_is_refused_before_queueing(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """An image of exactly 16 MiB arrives byte for byte; one byte more is refused with a
    message naming the limit and nothing is queued; a JPEG sent --as sticker is refused saying
    what a sticker must be."""
    d, sim = linked(daemon_factory, sim_factory, tmp_path)
    big = tmp_path / "big.jpg"
    big.write_bytes(media_bytes("image", 16 << 20))
    out = ctl(d, "send", "--from", "alice", BOB, "--file", str(big), "--wait", "sent", timeout=180)
    assert out.returncode == 0, out.stderr
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    eventually(lambda: received(sim, BOB), 60, "the 16 MiB image at the phone")
    assert [(m["kind"], m["sha256"], m["size"]) for m in received(sim, BOB)] == [
        ("image", digest, 16 << 20)
    ]
    with open(big, "ab") as fh:
        fh.write(b"x")
    out = ctl(d, "send", "--from", "alice", BOB, "--file", str(big))
    assert out.returncode == 2, out.stderr
    assert b"over WhatsApp's limit for an image, 16 MiB" in out.stderr, out.stderr
    small = tmp_path / "small.jpg"
    small.write_bytes(media_bytes("image", 10_000))
    out = ctl(d, "send", "--from", "alice", BOB, "--file", str(small), "--as", "sticker")
    assert out.returncode == 2 and b"only image/webp as a sticker" in out.stderr, out.stderr
    assert len(d.call("outbox.list", session="alice", limit=20)) == 1  # only the first
    assert not list((d.state_dir / "uploads").glob("*.part"))  # refused uploads are not kept


def test_kill9_during_media_sends_each_file_exactly_once(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """kill -9 of the daemon while 2 MiB documents are being handed to the page and sent,
    twice, restarted each time: every file reaches the phone exactly once."""
    sim = sim_factory(time_factor=0.2, accounts=[ALICE, BOB])
    d = start(daemon_factory, sim, send={"pacing": False}, restart={"backoff_initial": 0.2})
    link_by_qr(d, sim, "alice", ALICE, tmp_path)
    eventually(
        lambda: (d.state_dir / "profiles" / "alice.wasup").exists(), 15, "checkpoint after linking"
    )
    digests = []
    for i in range(6):
        data = media_bytes("document", 2 << 20)
        digests.append(hashlib.sha256(data).hexdigest())
        token = d.call("media.upload", data=base64.b64encode(data[:1]).decode())["token"]
        offset = 1
        while offset < len(data):
            chunk = data[offset : offset + (512 << 10)]
            d.call(
                "media.upload", data=base64.b64encode(chunk).decode(), offset=offset, token=token
            )
            offset += len(chunk)
        send_retrying(
            d, to=BOB, session="alice", file=token, filename=f"f{i}.pdf", idempotency_key=f"m{i}"
        )
    for _ in range(2):  # while the outbox drains: at a file being handed over or sent
        eventually(
            lambda: any(m["state"] in ("sending", "sent") for m in d.call("outbox.list", limit=10)),
            60,
            "a send under way",
        )
        d.kill9()
        d.start()
    eventually(lambda: state(d, "alice") == "connected", 60, "alice back after restarts")

    def all_sent() -> bool:
        done = [
            m
            for m in d.call("outbox.list", limit=20)
            if m["state"] in ("sent", "delivered", "read")
        ]
        return len(done) == 6

    eventually(all_sent, 180, "all 6 files sent")
    counts = Counter(m["sha256"] for m in received(sim, BOB))
    assert counts == Counter(digests)


def test_inbound_image_and_document_are_fetched_with_matching_hashes(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """A document and an image from a phone land in the inbox with kind, MIME type, size, file
    name, caption and hash; with download = "documents" the document is fetched into the media
    store as it arrives and the image when asked for (`media get`); both match their hash."""
    d, sim = linked(daemon_factory, sim_factory, tmp_path, media={"download": "documents"})
    files = {"document": media_bytes("document", 1 << 20), "image": media_bytes("image", 900_000)}
    for kind, data in files.items():
        media = {"data": base64.b64encode(data).decode(), "kind": kind,
                 "mimetype": "application/pdf" if kind == "document" else "image/jpeg",
                 "filename": "invoice.pdf" if kind == "document" else ""}  # fmt: skip
        sim.call("inject", to=ALICE, text=f"the {kind}", media=media, **{"from": BOB})
    rows = eventually(
        lambda: d.call("inbox.list", session="alice"),
        30,
        "2 in the inbox",
        ok=lambda r: len(r) == 2,
    )
    by_kind = {r["media_kind"]: r for r in rows}
    doc, img = by_kind["document"], by_kind["image"]
    assert (doc["body"], doc["media_mime"], doc["media_name"]) == (
        "the document",
        "application/pdf",
        "invoice.pdf",
    )
    assert (img["body"], img["media_mime"], img["media_size"]) == (
        "the image",
        "image/jpeg",
        900_000,
    )
    for kind, row in by_kind.items():
        assert row["media_sha256"] == hashlib.sha256(files[kind]).hexdigest()

    def stored() -> dict[str, int]:
        return {r["media_kind"]: r["media_stored"] for r in d.call("inbox.list", session="alice")}

    eventually(lambda: stored()["document"], 30, "the document fetched as it arrived")
    assert stored()["image"] == 0  # images wait until asked for
    for kind, row in by_kind.items():
        dest = tmp_path / f"got-{kind}"
        out = ctl(d, "media", "get", str(row["id"]), "-o", str(dest))
        assert out.returncode == 0, out.stderr
        assert hashlib.sha256(dest.read_bytes()).hexdigest() == row["media_sha256"]
    assert stored() == {"document": 1, "image": 1}
    out = ctl(d, "inbox", "alice")
    assert b"[document invoice.pdf, 1 MiB] the document" in out.stdout, out.stdout
    assert b"[image, 879 KiB] the image" in out.stdout, out.stdout


def test_download_all_fetches_every_file_within_the_cap_as_it_arrives(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """With download = "all" an inbound image is fetched as it arrives (no `media get`), and
    its bytes match; a file over max_download_mib is left for `media get`."""
    d, sim = linked(
        daemon_factory, sim_factory, tmp_path, media={"download": "all", "max_download_mib": 1}
    )
    small, large = media_bytes("image", 300_000), media_bytes("image", 1_500_000)
    for name, data in (("small", small), ("large", large)):
        media = {"data": base64.b64encode(data).decode(), "kind": "image", "mimetype": "image/jpeg"}
        sim.call("inject", to=ALICE, text=name, media=media, **{"from": BOB})
    rows = eventually(
        lambda: {r["body"]: r for r in d.call("inbox.list", session="alice")},
        30,
        "both images in the inbox",
        ok=lambda r: set(r) == {"small", "large"},
    )

    def stored(body: str) -> int:
        found = {r["body"]: r for r in d.call("inbox.list", session="alice")}
        return int(found[body]["media_stored"])

    eventually(lambda: stored("small"), 30, "the small image fetched as it arrived")
    assert stored("large") == 0  # over the cap: only on request
    dest = tmp_path / "small.jpg"
    out = ctl(d, "media", "get", str(rows["small"]["id"]), "-o", str(dest))
    assert out.returncode == 0, out.stderr
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == hashlib.sha256(small).hexdigest()


def test_a_media_webhook_names_the_file_and_carries_no_bytes(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """The `message` webhook of an inbound image has its kind, MIME type, size and hash, and the
    payload stays small: the bytes are fetched with `media get`, never inlined."""
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    rx = Receiver([])
    try:
        hooks = {"url": rx.url, "secret_file": str(secret), "events": ["message"]}
        _, sim = linked(daemon_factory, sim_factory, tmp_path, webhooks=hooks)
        data = media_bytes("image", 400_000)
        media = {"data": base64.b64encode(data).decode(), "kind": "image", "mimetype": "image/jpeg"}
        sim.call("inject", to=ALICE, text="look", media=media, **{"from": BOB})
        [delivery] = eventually(
            lambda: [b for b in rx.by_id().values() if b[0]["data"].get("body") == "look"],
            30,
            "the message webhook",
        )
    finally:
        rx.stop()
    payload = delivery[0]["data"]
    assert (payload["media_kind"], payload["media_mime"], payload["media_size"]) == (
        "image",
        "image/jpeg",
        400_000,
    )
    assert payload["media_sha256"] == hashlib.sha256(data).hexdigest()
    with rx.lock:
        assert all(len(body) < 8192 for _, body, _ in rx.got)  # names the file, holds no bytes
