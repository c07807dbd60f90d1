"""Chromium executable discovery, sandbox detection and the command line the daemon builds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from wasupd.errors import BrowserError
from wasupd.supervision import launcher
from wasupd.supervision.launcher import (
    BASE_FLAGS,
    LEAN_FLAGS,
    build_args,
    find_executable,
    sandbox_available,
)

PROFILE = Path("/var/lib/wasupd/live/alice")


def fake_bin(d: Path, name: str) -> Path:
    """An executable file called `name` in `d`."""
    path = d / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def path_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory that is the whole PATH."""
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", str(d))
    return d


def test_configured_path_wins(path_dir: Path) -> None:
    """A configured executable is used as given, even when auto-detection would find another."""
    fake_bin(path_dir, "chromium")
    mine = fake_bin(path_dir.parent, "my-chrome")
    assert find_executable(str(mine), "full") == str(mine)


def test_configured_command_name_is_looked_up_on_path(path_dir: Path) -> None:
    """A bare command name in the config is resolved through PATH."""
    found = fake_bin(path_dir, "google-chrome")
    assert find_executable("google-chrome", "full") == str(found)


@pytest.mark.parametrize("kind", ["missing", "directory", "not executable"])
def test_bad_configured_path_is_a_clear_error(path_dir: Path, kind: str) -> None:
    """A configured path that cannot run names the key and says what to do."""
    target = path_dir / "chrome"
    if kind == "directory":
        target.mkdir()
    elif kind == "not executable":
        target.write_text("")
    with pytest.raises(BrowserError, match="browser.executable .* not an executable file"):
        find_executable(str(target), "full")


@pytest.mark.parametrize(
    ("build", "present", "expected"),
    [
        ("full", ["google-chrome", "chromium"], "chromium"),
        ("full", ["google-chrome"], "google-chrome"),
        ("headless-shell", ["chromium", "chromium-headless-shell"], "chromium-headless-shell"),
    ],
)
def test_auto_detect_order(path_dir: Path, build: str, present: list[str], expected: str) -> None:
    """Auto-detection takes the first candidate of the requested build that is installed."""
    for name in present:
        fake_bin(path_dir, name)
    assert find_executable("", build) == str(path_dir / expected)  # type: ignore[arg-type]


def test_nothing_installed_names_the_package(path_dir: Path) -> None:
    """With no browser at all the error names the Debian package to install."""
    with pytest.raises(BrowserError, match="apt-get install chromium-headless-shell"):
        find_executable("", "headless-shell")


def test_other_build_installed_is_suggested(path_dir: Path) -> None:
    """When only the other build is installed, the error says how to switch to it."""
    fake_bin(path_dir, "chromium-headless-shell")
    with pytest.raises(BrowserError, match="browser.build = 'headless-shell', which is installed"):
        find_executable("", "full")


def test_sandbox_unavailable_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """As root the sandbox cannot work, and the reason says so."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert sandbox_available() == (False, "running as root (Chromium refuses its sandbox as root)")


def test_sandbox_needs_user_namespaces(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A non-root user without user namespaces has no sandbox; with them it has one."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    (tmp_path / "kernel").mkdir()
    (tmp_path / "user").mkdir()
    clone = tmp_path / "kernel" / "unprivileged_userns_clone"
    max_ns = tmp_path / "user" / "max_user_namespaces"
    max_ns.write_text("0\n")
    assert sandbox_available(tmp_path) == (
        False,
        "user namespaces are disabled (user.max_user_namespaces=0)",
    )
    clone.write_text("0\n")
    assert "unprivileged_userns_clone=0" in sandbox_available(tmp_path)[1]
    clone.write_text("1\n")
    max_ns.write_text("63000\n")
    assert sandbox_available(tmp_path) == (True, "")
    clone.unlink()  # kernels without the Debian knob: only the generic one counts
    assert sandbox_available(tmp_path) == (True, "")


def args_for(**kw: object) -> list[str]:
    """build_args with defaults for what a test does not care about."""
    params: dict[str, object] = {"build": "full", "profile_dir": PROFILE, "user_agent": "UA/1"}
    params.update(kw)
    return build_args(**params)  # type: ignore[arg-type]


def test_devtools_only_over_the_pipe() -> None:
    """The pipe is on, and no TCP debugging port (reachable by any local user) is ever asked for."""
    args = args_for()
    assert "--remote-debugging-pipe" in args
    assert not [a for a in args if a.startswith("--remote-debugging-port")]
    assert "--enable-automation" not in args
    assert "--disable-blink-features=AutomationControlled" in args


def test_headless_mode_per_build() -> None:
    """The full build runs new headless; the shell takes plain --headless."""
    assert args_for(build="full")[0] == "--headless=new"
    assert args_for(build="headless-shell")[0] == "--headless"


def test_quiet_closed_network_and_unthrottled_timers() -> None:
    """Background networking, updates, sync and first run are off; timers are not throttled."""
    args = set(args_for())
    for flag in (
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
    ):
        assert flag in args, flag


def features(args: list[str], switch: str) -> list[list[str]]:
    """The values of every `switch` (e.g. `--disable-features`) in `args`, each split on commas."""
    return [a.split("=", 1)[1].split(",") for a in args if a.startswith(switch + "=")]


def test_features_are_one_switch_each_per_build() -> None:
    """Base and lean features share one --disable-features and one --enable-features (a second
    would override the first), with the full build's omnibox popup off and the network service
    in the browser process for both builds; without the savers only the base features remain."""
    full, shell = args_for(build="full"), args_for(build="headless-shell")
    for args in (full, shell):
        assert len(features(args, "--disable-features")) == 1
        assert features(args, "--enable-features") == [["NetworkServiceInProcess2"]]
        assert {"Translate", "MediaRouter"} <= set(features(args, "--disable-features")[0])
    assert "WebUIOmniboxPopup" in features(full, "--disable-features")[0]
    assert "WebUIOmniboxPopup" not in features(shell, "--disable-features")[0]
    plain = args_for(lean=False)
    assert features(plain, "--disable-features") == [list(launcher.BASE_DISABLED_FEATURES)]
    assert not features(plain, "--enable-features")


def test_profile_user_agent_proxy() -> None:
    """The profile dir is explicit; user agent and proxy appear only when set."""
    args = args_for(proxy="socks5://10.0.0.1:1080")
    assert f"--user-data-dir={PROFILE}" in args
    assert "--user-agent=UA/1" in args
    assert "--proxy-server=socks5://10.0.0.1:1080" in args
    bare = args_for(user_agent="")
    assert not [a for a in bare if a.startswith(("--user-agent", "--proxy-server"))]


def test_extra_args_come_last() -> None:
    """Extra args follow everything else, so they override the daemon's own switches."""
    args = args_for(extra_args=["--lang=de", "--renderer-process-limit=4"])
    assert args[-2:] == ["--lang=de", "--renderer-process-limit=4"]
    assert set(BASE_FLAGS) | set(LEAN_FLAGS) <= set(args[:-2])


def test_no_sandbox_only_when_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the sandbox works, `auto` keeps it; where it cannot, --no-sandbox comes with a warning."""
    monkeypatch.setattr(launcher, "_warned", set())
    monkeypatch.setattr(launcher, "sandbox_available", lambda: (True, ""))
    assert "--no-sandbox" not in args_for(sandbox="auto")
    assert "--no-sandbox" not in args_for(sandbox="on")
    monkeypatch.setattr(launcher, "sandbox_available", lambda: (False, "running as root"))
    with capture_logs() as logs:
        assert "--no-sandbox" in args_for(sandbox="auto")
        assert "--no-sandbox" in args_for(sandbox="auto")
    warnings = [e for e in logs if e["event"] == "sandbox_disabled"]
    assert len(warnings) == 1 and warnings[0]["reason"] == "running as root"
    assert warnings[0]["log_level"] == "warning"


def test_sandbox_on_where_it_cannot_work_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for the sandbox where it cannot work fails with the reason, not a dead browser."""
    monkeypatch.setattr(launcher, "sandbox_available", lambda: (False, "running as root"))
    with pytest.raises(BrowserError, match="sandbox cannot work here: running as root"):
        args_for(sandbox="on")


def test_sandbox_off_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """`off` adds --no-sandbox even where the sandbox would work."""
    monkeypatch.setattr(launcher, "sandbox_available", lambda: (True, ""))
    assert "--no-sandbox" in args_for(sandbox="off")
