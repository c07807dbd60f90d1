"""Real Chromium trees under kill -9 and SIGSTOP: exits are reported and nothing is left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from tests.helpers import chromium
from tests.helpers.waiting import eventually_async
from wasupd.errors import BrowserError
from wasupd.supervision import reaper
from wasupd.supervision.process import (
    CLOSE_TIMEOUT,
    ChromiumHandle,
    find_profile_processes,
    sweep_profile,
)
from wasupd.supervision.seams import LaunchRequest

pytestmark = pytest.mark.chromium


def request(tmp: Path, name: str = "s") -> LaunchRequest:
    """A launch of the full build on a fresh profile under `tmp`."""
    return chromium.request(tmp / name, user_agent="UA")


def helpers(h: ChromiumHandle, kind: str) -> list[psutil.Process]:
    """The browser's helper processes of one `--type=` (renderer, zygote, gpu-process...)."""
    return [
        p for p in psutil.Process(h.pid).children(recursive=True) if f"--type={kind}" in p.cmdline()
    ]


def zombie_children() -> list[int]:
    """Zombies whose parent is this test process (what a subreaper must not accumulate)."""
    out = []
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                out.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return out


@pytest.fixture
def subreaper() -> Iterator[None]:
    """This test process is a child subreaper, as the daemon is; orphans come to it."""
    assert reaper.become_subreaper(True)
    try:
        yield
    finally:
        reaper.become_subreaper(False)
        reaper.reap_orphans()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[ChromiumHandle]:
    """One ready browser, stopped (and checked) at the end whatever the test did to it."""
    h = await chromium.launch(request(tmp_path))
    try:
        yield h
    finally:
        await h.stop(2.0)
        assert not find_profile_processes(h.profile_dir)


async def test_several_sessions_start_and_stop_concurrently(tmp_path: Path) -> None:
    """Four browsers start side by side, each with its own tree and page, and all stop cleanly."""
    async with asyncio.timeout(60):
        handles = await asyncio.gather(
            *(chromium.launch(request(tmp_path, f"s{i}")) for i in range(4))
        )
    try:
        assert len({h.pid for h in handles}) == 4
        assert [await h.page.evaluate(f"{i} * 2") for i, h in enumerate(handles)] == [0, 2, 4, 6]
    finally:
        async with asyncio.timeout(30):
            reports = await asyncio.gather(*(h.stop(5) for h in handles))
    assert all(r.closed_via_devtools and r.exit_status == 0 for r in reports), reports
    assert not any(find_profile_processes(h.profile_dir) for h in handles)


async def test_memory_flags_leave_the_page_view_alone(browser: ChromiumHandle) -> None:
    """The daemon's lean flags must not change what a page can observe: WebGL (software, as on
    any GPU-less desktop) is still there, `navigator.webdriver` is false, and there is one tab
    (no initial about:blank beside the session's page)."""
    seen = await browser.page.evaluate(
        """() => ({
            webgl: !!document.createElement('canvas').getContext('webgl'),
            webgl2: !!document.createElement('canvas').getContext('webgl2'),
            webdriver: navigator.webdriver,
        })"""
    )
    assert seen == {"webgl": True, "webgl2": True, "webdriver": False}
    targets = await browser.page._client.send("Target.getTargets")
    pages = [t for t in targets["targetInfos"] if t["type"] == "page"]
    assert len(pages) == 1, pages


async def test_kill9_browser_reports_exit_and_orphans_are_reaped(
    browser: ChromiumHandle, subreaper: None
) -> None:
    """kill -9 of the browser: the handle reports -9 (its status not stolen by the orphan reaper
    running alongside), and stop kills and reaps the orphaned helpers: no process, no zombie."""
    orphans = [p.pid for p in psutil.Process(browser.pid).children(recursive=True)]
    assert orphans
    task = asyncio.ensure_future(reaper.OrphanReaper(safety_interval=0.2).run())
    try:
        os.kill(browser.pid, signal.SIGKILL)
        async with asyncio.timeout(5):
            assert await browser.wait_exit() == -9
        report = await browser.stop(2.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert report.exit_status == -9 and not report.closed_via_devtools
    assert not find_profile_processes(browser.profile_dir)
    assert not set(orphans) & set(zombie_children())
    assert not [pid for pid in orphans if psutil.pid_exists(pid)]


async def test_kill9_renderer_crashes_the_page_not_the_browser(browser: ChromiumHandle) -> None:
    """kill -9 of the renderers: the page reports a crash, the browser still answers DevTools."""
    crashed = asyncio.Event()
    browser.page.on("error", lambda _exc: crashed.set())
    for proc in helpers(browser, "renderer"):
        proc.kill()
    async with asyncio.timeout(10):
        await crashed.wait()
    await browser.ping(5)
    assert not browser.exited


async def test_kill9_zygote_leaves_a_stoppable_tree(browser: ChromiumHandle) -> None:
    """kill -9 of the zygotes (renderers die with them): stop still clears the whole tree."""
    zygotes = helpers(browser, "zygote")
    assert zygotes
    for proc in zygotes:
        proc.kill()
    report = await browser.stop(2.0)
    assert report.exit_status is not None
    assert not find_profile_processes(browser.profile_dir)


async def test_helper_adopted_after_its_zygote_died_is_counted_and_stopped(
    browser: ChromiumHandle, subreaper: None
) -> None:
    """kill -9 of the unsandboxed zygote orphans the GPU process, which keeps serving the live
    browser: adopted by the subreaper, it still counts in the session's usage and dies at stop."""
    (zygote,) = [p for p in helpers(browser, "zygote") if "--no-zygote-sandbox" in p.cmdline()]
    gpu = [p for p in zygote.children() if "--type=gpu-process" in p.cmdline()]
    assert gpu, "the GPU process is a child of the unsandboxed zygote"
    zygote.kill()
    # Re-parenting happens as the zygote's exit is processed.
    await eventually_async(
        gpu[0].ppid, 10, "the GPU process's adoption", ok=lambda ppid: ppid == os.getpid()
    )
    await browser.ping(5)  # the browser lives on without that zygote
    assert gpu[0].is_running()
    alive = {p.pid for p in find_profile_processes(browser.profile_dir)}
    assert gpu[0].pid in alive
    # The zygote's loss makes the next sample rediscover the tree.
    await eventually_async(
        lambda: browser.usage().processes,
        10,
        f"a usage sample counting {len(alive)} processes",
        ok=lambda n: n == len(alive),
        interval=0.1,
    )
    await browser.stop(2.0)
    assert not gpu[0].is_running() or gpu[0].status() == psutil.STATUS_ZOMBIE
    assert not find_profile_processes(browser.profile_dir)


async def test_sigstop_browser_ping_fails_and_stop_is_bounded(browser: ChromiumHandle) -> None:
    """A stopped (hung) browser fails the ping within its timeout; stop ends it within its bound."""
    os.kill(browser.pid, signal.SIGSTOP)
    t0 = time.monotonic()
    with pytest.raises(BrowserError, match="did not answer within 0.5 s"):
        await browser.ping(0.5)
    assert time.monotonic() - t0 < 2
    stop_timeout = 1.0
    report = await browser.stop(stop_timeout)
    assert report.sent_sigterm and not report.closed_via_devtools
    assert report.exit_status in (0, -signal.SIGTERM, -signal.SIGKILL)  # 0: it handled SIGTERM
    assert report.duration < CLOSE_TIMEOUT + stop_timeout + 3
    assert not find_profile_processes(browser.profile_dir)


async def test_connection_survives_a_timed_out_call(browser: ChromiumHandle) -> None:
    """A ping that timed out while the browser was frozen does not break the connection: once
    the browser runs again, later calls (browser and page) are answered."""
    os.kill(browser.pid, signal.SIGSTOP)
    with pytest.raises(BrowserError):
        await browser.ping(0.3)
    async with asyncio.timeout(5):
        pending = asyncio.ensure_future(browser.page.evaluate("21 * 2"))
        done, _ = await asyncio.wait({pending}, timeout=0.3)
        assert not done  # frozen: no answer yet
        pending.cancel()  # a caller that gives up, as a probe timeout does
        os.kill(browser.pid, signal.SIGCONT)
        await browser.ping(5)
        assert await browser.page.evaluate("20 + 22") == 42


async def test_hung_browser_stops_without_devtools(browser: ChromiumHandle) -> None:
    """With devtools=False (the hang watchdog's stop) no time is spent on Browser.close."""
    os.kill(browser.pid, signal.SIGSTOP)
    report = await browser.stop(1.0, devtools=False)
    assert report.sent_sigterm and not report.closed_via_devtools
    assert report.duration < 1.0 + 2
    assert not find_profile_processes(browser.profile_dir)


async def test_call_in_flight_fails_at_once_when_the_browser_dies(browser: ChromiumHandle) -> None:
    """A DevTools call pending when the browser dies fails promptly instead of waiting out its
    timeout: the pipe's close reaches pyppeteer as a closed connection."""
    os.kill(browser.pid, signal.SIGSTOP)
    pending = asyncio.ensure_future(browser.ping(30))
    await asyncio.sleep(0)  # let the call be written before the browser goes
    os.kill(browser.pid, signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(BrowserError):
        async with asyncio.timeout(10):
            await pending
    assert time.monotonic() - t0 < 5


def test_sweep_profile_kills_strays_of_a_dead_daemon(tmp_path: Path) -> None:
    """At daemon start, a leftover process naming a live profile (in its own session, not our
    child) is killed, and processes of other profiles are left alone."""
    mine, other = tmp_path / "mine", tmp_path / "other"
    cmd = [sys.executable, "-c", "import time; time.sleep(60)"]
    stray = subprocess.Popen([*cmd, f"--user-data-dir={mine}"], start_new_session=True)
    bystander = subprocess.Popen([*cmd, f"--user-data-dir={other}"])
    try:
        assert sweep_profile(mine, timeout=5) == [stray.pid]
        assert not psutil.pid_exists(stray.pid)  # killed, waited for and (our child) reaped
        assert bystander.poll() is None
    finally:
        for proc in (stray, bystander):
            proc.kill()
            proc.wait()
