"""When a missing profile key may be created at first start, and when it must not be."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasupd.profiles.firstkey import create_at_start, missing, refusal
from wasupd.profiles.keys import load_keyring


def test_an_empty_state_dir_allows_it_and_creation_makes_a_loadable_key(tmp_path: Path) -> None:
    """Nothing sealed, not system mode: no refusal, and the key is created once."""
    key = tmp_path / "conf" / "profile.key"
    assert refusal(key, tmp_path / "state", system=False) is None
    kid = create_at_start(key, tmp_path / "state", system=False)
    assert kid is not None and load_keyring(key).current_id == kid
    assert create_at_start(key, tmp_path / "state", system=False) is None  # exists now
    assert load_keyring(key).current_id == kid


@pytest.mark.parametrize(
    "thing",
    [
        "profiles/alice.wasup",
        "exports/alice.wasup",
        "replaced-20240101T000000Z/profiles/alice.wasup",
        "backups/wasupd-20240101T000000Z/MANIFEST.json",
    ],
)
def test_anything_sealed_refuses_and_names_it(tmp_path: Path, thing: str) -> None:
    """Archives in profiles/, exports/, replaced-*/ and anything in backups/ need the old key."""
    state = tmp_path / "state"
    (state / thing).parent.mkdir(parents=True)
    (state / thing).write_bytes(b"x")
    why = refusal(tmp_path / "profile.key", state, system=False)
    assert (
        why is not None
        and thing.split("/", maxsplit=1)[0] in why
        and "put that key file back" in why
    )
    assert create_at_start(tmp_path / "profile.key", state, system=False) is None
    assert not (tmp_path / "profile.key").exists()


def test_system_mode_and_credentials_refuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """System mode keeps `wasupd keygen`; a systemd credential is never written."""
    assert "wasupd keygen" in (refusal(tmp_path / "k", tmp_path, system=True) or "")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert "systemd credential" in (refusal(tmp_path / "profile-key", tmp_path, system=False) or "")


def test_a_dangling_symlink_is_not_missing(tmp_path: Path) -> None:
    """A symlink where the key should be is left for the loader to refuse, never written through."""
    key = tmp_path / "profile.key"
    key.symlink_to(tmp_path / "elsewhere")
    assert not missing(key) and missing(tmp_path / "other.key")
    assert create_at_start(key, tmp_path / "state", system=False) is None
    assert not (tmp_path / "elsewhere").exists()
