"""The host-limit checks of `wasupd check`: open files and inotify instances, sized per process
and per user from what 100 sessions were measured to hold."""

from __future__ import annotations

from pathlib import Path

from wasupd.config import Config, LimitsConfig
from wasupd.preflight.limits import check_inotify, check_open_files


def config(max_sessions: int) -> Config:
    """The default config with `limits.max_sessions` set."""
    return Config(limits=LimitsConfig(max_sessions=max_sessions))


def test_open_files_are_sized_per_process_not_summed_over_the_trees() -> None:
    """100 sessions fit a hard limit of 20,000 (the daemon needs about 1,056, a browser process
    1,024); the same limit warns for 5,000 sessions and names the key and the fix."""
    [ok] = check_open_files(config(100), hard=20_000)
    assert (ok.level, ok.detail) == ("ok", "hard limit 20000 (need about 1056)")
    [small] = check_open_files(config(100), hard=512)
    assert small.level == "warn" and "below 1056" in small.detail
    assert "limits.max_sessions" in small.detail and "LimitNOFILE=" in small.detail
    [many] = check_open_files(config(5000), hard=20_000)
    assert many.level == "warn" and "below 40256 for 5000 sessions" in many.detail


def test_inotify_instances_below_two_per_browser_warn_with_the_sysctl(tmp_path: Path) -> None:
    """The default 128 instances warn for 100 sessions (216 needed), naming the sysctl and the
    value; 50 sessions fit; an unreadable limit warns instead of failing the check."""
    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    [warn] = check_inotify(config(100), limit)
    assert warn.level == "warn"
    assert "is 128, below 216 for 100 sessions" in warn.detail
    assert "sysctl -w fs.inotify.max_user_instances=216" in warn.detail
    [ok] = check_inotify(config(50), limit)
    assert (ok.level, ok.detail) == ("ok", "max_user_instances 128 (need about 116)")
    [unread] = check_inotify(config(50), tmp_path / "missing")
    assert unread.level == "warn" and "cannot read" in unread.detail
