"""systemd's own rating of the shipped unit: `systemd-analyze security --offline=yes` must keep
wasupd.service in its "OK" band (overall exposure <= 3.9)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OK_BAND = 3.9


def exposure(unit: Path) -> float:
    """The overall exposure systemd-analyze prints for `unit` (0 safest, 10 worst)."""
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out.stdout)
    assert found, out.stdout[-2000:] + out.stderr
    return float(found.group(1))


def test_unit_is_rated_ok_by_systemd(tmp_path: Path) -> None:
    """The unit's exposure is at most 3.9, and the settings the rating rests on are present."""
    unit = tmp_path / "wasupd.service"
    unit.write_text((ROOT / "systemd/wasupd.service").read_text())
    assert exposure(unit) <= OK_BAND
    text = unit.read_text()
    for setting in ("CapabilityBoundingSet=\n", "RestrictNamespaces=user pid net\n"):
        assert setting in text


def test_the_rating_sees_a_weakened_unit(tmp_path: Path) -> None:
    """The measurement can fail: without the capability bounding set the unit leaves the band."""
    unit = tmp_path / "wasupd.service"
    text = (ROOT / "systemd/wasupd.service").read_text()
    unit.write_text(text.replace("CapabilityBoundingSet=\n", ""))
    assert exposure(unit) > OK_BAND
