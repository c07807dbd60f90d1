"""Chromium process trees with faults: each ends in the documented outcome with nothing left."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import chromium
from tests.helpers.waiting import eventually, eventually_async
from wasupd.errors import BrowserError
from wasupd.supervision.locks import clear_stale_singletons, lock_owner
from wasupd.supervision.process import find_profile_processes
from wasupd.supervision.seams import LaunchRequest
from wasupd.watchdogs import resources
from wasupd.watchdogs.resources import TreeSampler, profile_named_by

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "browser.py"


def request(tmp: Path, mode: str | None, start_timeout: float = 30) -> LaunchRequest:
    """A launch of the real Chromium, or of the fake browser in `mode` wrapping it."""
    wrap = () if mode is None else (sys.executable, str(FAKE), mode)
    return chromium.request(
        tmp / "profile", session="t", user_agent="UA", start_timeout=start_timeout, wrap=wrap
    )


def assert_nothing_left(profile: Path, pids: list[int]) -> None:
    """No process uses the profile, and none of `pids` is still running (zombies of init aside)."""
    assert not find_profile_processes(profile)
    live = []
    for pid in pids:
        try:
            live.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(live, timeout=5)
    assert all(p.status() == psutil.STATUS_ZOMBIE for p in alive if p.is_running()), alive


async def test_real_browser_starts_and_stops_cleanly(tmp_path: Path) -> None:
    """A real Chromium answers over the pipe, has a page, and closes via DevTools with exit 0."""
    h = await chromium.launch(request(tmp_path, None))
    pids = [p.pid for p in psutil.Process(h.pid).children(recursive=True)]
    assert await h.page.evaluate("1 + 1") == 2
    assert h.usage().processes >= 3
    report = await h.stop(5)
    assert report.closed_via_devtools and report.exit_status == 0 and not report.sent_sigkill
    assert_nothing_left(h.profile_dir, [h.pid, *pids])


async def test_sigterm_ignored_escalates_to_sigkill(tmp_path: Path) -> None:
    """A top process ignoring SIGTERM is SIGKILLed after stop_timeout; nothing remains."""
    h = await chromium.launch(request(tmp_path, "ignore_term"))
    report = await h.stop(1.0)
    assert report.sent_sigterm and report.sent_sigkill
    assert report.exit_status == -9
    assert_nothing_left(h.profile_dir, [h.pid])


async def test_double_forked_grandchild_is_swept(tmp_path: Path) -> None:
    """A grandchild that left the process group is found by its profile dir and killed."""
    h = await chromium.launch(request(tmp_path, "double_fork"))
    escaped = [
        p.pid
        for p in find_profile_processes(h.profile_dir)
        if p.pid != h.pid and os.getpgid(p.pid) != h.pid
    ]
    assert escaped, "the fake should have left an escaped grandchild"
    report = await h.stop(2.0)
    assert set(escaped) <= set(report.swept_pids)
    assert_nothing_left(h.profile_dir, escaped)


async def test_fast_exit_zero_is_a_failed_start(tmp_path: Path) -> None:
    """A browser that exits 0 at once did not start: BrowserError, nothing left."""
    with pytest.raises(BrowserError, match="exited with status 0 during start"):
        await chromium.launch(request(tmp_path, "exit0"))
    assert_nothing_left(tmp_path / "profile", [])


async def test_browser_that_never_answers_times_out(tmp_path: Path) -> None:
    """No DevTools answer within start_timeout: BrowserError and the process is killed."""
    with pytest.raises(BrowserError, match="not ready within 2 s"):
        await chromium.launch(request(tmp_path, "hang", start_timeout=2))
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(FAKE) in " ".join(p.info["cmdline"] or []) and "hang" in (p.info["cmdline"] or [])
    ]


async def test_growing_memory_is_seen_between_exact_measures(tmp_path: Path) -> None:
    """A tree that keeps allocating shows it in the cheap samples, and an exact PSS agrees."""
    h = await chromium.launch(request(tmp_path, "memory"))
    try:
        sampler = TreeSampler(h.pid, h.profile_dir, pss_max_age=3600, discover_every=3600)
        first = sampler.sample()
        os.kill(h.pid, signal.SIGUSR1)  # the fake's cue to allocate 256 MiB
        now = await eventually_async(
            sampler.sample,
            20,
            "the tree's PSS to grow by 240 MiB",
            ok=lambda usage: usage.pss_bytes >= first.pss_bytes + (240 << 20),
            interval=0.1,
        )
        assert sampler.exact_samples == 1  # seen by the cheap estimate, not a new smaps walk
        exact = sampler.sample(exact=True)
        assert abs(exact.pss_bytes - now.pss_bytes) < 0.15 * exact.pss_bytes, (now, exact)
    finally:
        await h.stop(1.0)
    assert_nothing_left(h.profile_dir, [h.pid])


async def test_sampler_says_which_samples_are_quick(tmp_path: Path) -> None:
    """quick() is true only when the next sample needs neither a /proc scan (discovery, a lost
    member) nor an exact PSS: those the runner sends to a thread."""
    h = await chromium.launch(request(tmp_path, "memory"))
    now = [1000.0]
    try:
        sampler = TreeSampler(
            h.pid, h.profile_dir, pss_max_age=300, discover_every=60, clock=lambda: now[0]
        )
        assert not sampler.quick()  # nothing discovered or measured yet
        sampler.sample()
        assert sampler.quick() and sampler.exact_samples == 1
        now[0] += 10
        assert sampler.quick()
        sampler.sample()
        now[0] = 1020.0  # the next discovery grid cell
        assert not sampler.quick()
        sampler.sample()
        assert sampler.quick()
        now[0] += 300  # the exact PSS is due again
        assert not sampler.quick()
        sampler.sample()
        assert sampler.exact_samples == 2 and sampler.quick()
    finally:
        await h.stop(1.0)
    assert_nothing_left(h.profile_dir, [h.pid])


def test_samplers_that_lose_members_together_share_one_proc_scan() -> None:
    """Many trees losing a helper at once (the full build's utility processes come and go)
    rediscover from one shared scan of /proc, no older than FRESH_SNAPSHOT_AGE, instead of one
    full scan each; the lost helper is no longer counted in either tree."""
    trees = [
        subprocess.Popen(
            ["sh", "-c", "sleep 300 & echo $!; exec sleep 300"], stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    try:
        helpers = [int(t.stdout.readline()) for t in trees if t.stdout is not None]
        now = [time.monotonic() + 100]  # later than any snapshot an earlier test took
        samplers = [TreeSampler(t.pid, clock=lambda: now[0]) for t in trees]
        for sampler, helper in zip(samplers, helpers, strict=True):
            sampler.sample()
            assert helper in sampler.pids
        for helper in helpers:
            os.kill(helper, signal.SIGKILL)
        for helper in helpers:
            eventually(
                lambda h=helper: (
                    not psutil.pid_exists(h) or psutil.Process(h).status() == psutil.STATUS_ZOMBIE
                ),
                10,
                f"helper {helper} to die",
            )
        now[0] += resources.FRESH_SNAPSHOT_AGE + 1  # within SNAPSHOT_TTL, past the fresh age
        for sampler in samplers:
            sampler.sample()  # sees the loss
        scans = resources._Snapshot.scans
        for sampler in samplers:
            sampler.sample()  # rediscovers
        assert resources._Snapshot.scans == scans + 1
        for sampler in samplers:
            assert sampler.sample().processes == 1  # the shell alone: its helper is not counted
    finally:
        for t in trees:
            t.kill()
            t.wait(10)
            if t.stdout is not None:
                t.stdout.close()


def test_periodic_exact_pss_walks_only_members_that_moved() -> None:
    """At a periodic exact measure a member whose private memory stayed within STILL_BYTES
    keeps its estimate (no smaps walk), one that grew is walked; after STILL_PERIODS periods
    every member is walked again, and a forced exact sample walks all of them."""
    # The root allocates 16 MiB when it reads a line; its `sleep` child never moves.
    prog = (
        "import subprocess, sys; c = subprocess.Popen(['sleep', '300']);"
        " print(c.pid, flush=True); sys.stdin.readline();"
        " held = bytearray(16 << 20); held[::4096] = b'x' * (len(held) // 4096);"
        " print('grown', flush=True); sys.stdin.readline(); c.kill()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", prog], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdin is not None
            child = int(proc.stdout.readline())
            now = [time.monotonic() + 100]  # later than any snapshot an earlier test took
            sampler = TreeSampler(
                proc.pid, pss_max_age=300, discover_every=1e9, clock=lambda: now[0]
            )
            assert sampler.sample().processes == 2 and child in sampler.pids
            assert sampler.exact_walks == 2  # the first sample measures everyone
            now[0] += 300
            sampler.sample()  # periodic: nobody moved
            assert (sampler.exact_samples, sampler.exact_walks) == (2, 2)
            proc.stdin.write(b"grow\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == b"grown\n"
            now[0] += 300
            grown = sampler.sample()  # periodic: the root moved by 16 MiB, the child did not
            assert (sampler.exact_samples, sampler.exact_walks) == (3, 3)
            now[0] += 2 * 300  # the child's last walk is STILL_PERIODS periods old now
            sampler.sample()
            assert sampler.exact_walks == 3 + 1
            exact = sampler.sample(exact=True)  # forced: both
            assert sampler.exact_walks == 4 + 2
            assert abs(exact.pss_bytes - grown.pss_bytes) < (4 << 20), (grown, exact)
        finally:
            proc.communicate(b"done\n", timeout=10)


def test_profile_named_by_reads_both_command_line_forms(tmp_path: Path) -> None:
    """The profile dir is read from a normal (NUL-separated) command line; the rewritten,
    space-separated form of Chromium's helpers is covered by the adopted-helper test."""
    # The child says when it runs: until execve has finished, its command line reads empty.
    prog = "import sys; print('up', flush=True); sys.stdin.read()"
    for extra, expected in (([f"--user-data-dir={tmp_path}/"], str(tmp_path)), ([], None)):
        with subprocess.Popen(
            [sys.executable, "-c", prog, *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        ) as proc:
            try:
                assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
                assert profile_named_by(proc.pid) == expected
            finally:
                proc.communicate(timeout=5)


async def test_fd_hog_shows_in_the_tree_sample(tmp_path: Path) -> None:
    """Thousands of fds inherited by the browser are counted."""
    h = await chromium.launch(request(tmp_path, "fds"))
    try:
        assert h.usage().fds > 3000
    finally:
        await h.stop(1.0)
    assert_nothing_left(h.profile_dir, [h.pid])


async def test_stale_foreign_lock_fails_start_until_cleared(tmp_path: Path) -> None:
    """Chromium refuses a profile locked by a vanished host (exit 21); once the stale links are
    cleared, as the daemon does before every launch, the same profile starts."""
    with pytest.raises(BrowserError, match="exited with status 21 during start"):
        await chromium.launch(request(tmp_path, "stale_lock"))
    profile = tmp_path / "profile"
    assert lock_owner(profile) == ("gone-container", 4242)
    assert sorted(clear_stale_singletons(profile)) == [
        "SingletonCookie",
        "SingletonLock",
        "SingletonSocket",
    ]
    h = await chromium.launch(request(tmp_path, None))
    assert (await h.stop(5)).closed_via_devtools
    assert_nothing_left(profile, [h.pid])


def test_stale_lock_from_another_host_is_removed(tmp_path: Path) -> None:
    """SingletonLock naming another host (a dead container) is stale: the three links are unlinked."""
    for name, target in (
        ("SingletonLock", "old-container-4242"),
        ("SingletonCookie", "123"),
        ("SingletonSocket", "/tmp/gone/SingletonSocket"),
    ):
        os.symlink(target, tmp_path / name)
    assert lock_owner(tmp_path) == ("old-container", 4242)
    assert sorted(clear_stale_singletons(tmp_path)) == [
        "SingletonCookie",
        "SingletonLock",
        "SingletonSocket",
    ]
    assert not list(tmp_path.iterdir())


def test_lock_of_a_live_chromium_here_is_kept(tmp_path: Path) -> None:
    """A lock naming this host and a live process using the profile is not touched."""
    os.symlink(f"{socket.gethostname()}-{os.getpid()}", tmp_path / "SingletonLock")
    proc = psutil.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", f"--user-data-dir={tmp_path}"]
    )
    try:
        assert clear_stale_singletons(tmp_path) == []
        assert (tmp_path / "SingletonLock").is_symlink()
    finally:
        proc.kill()
        proc.wait()
