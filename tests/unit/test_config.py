"""Config parsing: defaults, the documented file, and precise errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from wasupd.config import DEFAULT_USER_AGENT, changed_keys, load_config, parse_config, to_toml
from wasupd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_documented_file_matches_the_defaults() -> None:
    """etc/wasupd.toml lists every key with exactly the built-in default."""
    data = tomllib.loads((ROOT / "etc/wasupd.toml").read_text())
    defaults = parse_config({})
    assert parse_config(data) == defaults
    documented = {(s, k) for s, table in data.items() for k in table}
    every = {(s, k) for s, table in tomllib.loads(to_toml(defaults)).items() for k in table}
    assert documented == every


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"browser": {"stop_timeout": "ten"}}, "browser.stop_timeout: expected a number"),
        ({"limits": {"max_sessions": 2.5}}, "limits.max_sessions: expected an integer"),
        ({"daemon": {"log_level": "loud"}}, "daemon.log_level: expected one of"),
        ({"daemon": {"nope": 1}}, "daemon.nope: unknown key"),
        ({"bogus": {}}, "bogus: unknown section"),
        ({"browser": {"extra_args": ["--a", 3]}}, "browser.extra_args: expected a list of strings"),
        ({"send": {"window": "6-22"}}, "send.window: expected 'HH:MM-HH:MM'"),
        ({"restart": {"backoff_max": -1}}, "restart.backoff_max: must not be negative"),
        ({"health": {"self_ping": "yes"}}, "health.self_ping: expected a boolean"),
        ({"daemon": 3}, "daemon: expected a table"),
        ({"daemon": {"retention_days": 1}}, "daemon.retention_days: must be 0 (keep everything)"),
        ({"store": {"url": "mysql://db/x"}}, "store.url: expected a PostgreSQL URL such as"),
    ],
)
def test_bad_values_name_the_key(doc: dict[str, object], fragment: str) -> None:
    """Each bad value raises ConfigError naming the key path and what was expected."""
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert fragment in err.value.message


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    """A broken TOML file, an unreadable one and a missing explicit one are precise errors."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml", missing_ok=False)
    assert load_config(tmp_path / "missing.toml") == parse_config({})


def test_ints_widen_to_floats_and_paths_resolve() -> None:
    """An integer is accepted for a float key; empty paths get the per-user defaults."""
    cfg = parse_config({"browser": {"stop_timeout": 3}, "daemon": {"runtime_dir": "/x"}})
    assert cfg.browser.stop_timeout == 3.0
    assert isinstance(cfg.browser.stop_timeout, float)
    assert cfg.daemon.socket == "/x/wasupd.sock"
    assert cfg.browser.user_agent == DEFAULT_USER_AGENT


def test_changed_keys_lists_dotted_paths() -> None:
    """changed_keys reports exactly the keys whose values differ."""
    a = parse_config({})
    b = parse_config({"limits": {"fds": 10}, "browser": {"url": "http://x/"}})
    assert sorted(changed_keys(a, b)) == ["browser.url", "limits.fds"]
