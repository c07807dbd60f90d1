"""End to end: a campaign that sends one file to every recipient, through real Chromium."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.e2e.test_linking import ALICE, BOB, ctl, link_by_qr, start
from tests.e2e.test_media import media_bytes, received
from tests.helpers.waiting import eventually

CAROL = "15550003333"


def test_a_campaign_sends_its_file_to_each_recipient_once(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """`campaign create --file` sends the same image (caption filled in per recipient) to
    each recipient once, byte for byte; the file is stored once."""
    sim = sim_factory(time_factor=0.2, accounts=[ALICE, BOB, CAROL])
    d = start(daemon_factory, sim, send={"pacing": False, "jitter_min": 0.0, "jitter_max": 0.0})
    link_by_qr(d, sim, "alice", ALICE, tmp_path)
    image = tmp_path / "flyer.jpg"
    image.write_bytes(media_bytes("image", 400_000))
    csv = tmp_path / "to.csv"
    csv.write_text(f"phone,name\n+{BOB},Bob\n+{CAROL},Carol\n")
    out = ctl(
        d, "campaign", "create", "flyer", "--recipients", str(csv), "--from", "alice",
        "--file", str(image), "--text", "Hi {name}, our new flyer",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    for phone, name in ((BOB, "Bob"), (CAROL, "Carol")):
        got = eventually(lambda p=phone: received(sim, p), 90, f"the flyer at {name}")  # type: ignore[misc]
        assert [(m["kind"], m["sha256"], m["caption"]) for m in got] == [
            ("image", digest, f"Hi {name}, our new flyer")
        ]
    assert [p.name for p in (d.state_dir / "media").glob("*/*")] == [digest]
