"""Real Chromium for tests that start a browser themselves, launched exactly as the daemon does.

The command line comes from the daemon's own `services.build_request` (so `launcher.build_args`
and `find_executable`), the process from `process.ChromiumLauncher` (own process group, the
DevTools pipe on fds 3/4, pyppeteer over the pipe, one page). A test that drives a browser
therefore exercises the flags and transport production uses, not a look-alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from wasupd.config import parse_config
from wasupd.services import build_request
from wasupd.supervision.launcher import find_executable
from wasupd.supervision.process import STOP_MARGIN, ChromiumHandle, ChromiumLauncher
from wasupd.supervision.runner import SessionOptions
from wasupd.supervision.seams import LaunchRequest


def executable() -> str:
    """The Chromium the daemon would pick with the default config (`BrowserError` if none)."""
    return find_executable("", "full")


def request(
    profile: Path,
    *,
    session: str = "",
    user_agent: str = "",
    start_timeout: float = 30.0,
    url: str = "about:blank",
    wrap: Sequence[str] = (),
) -> LaunchRequest:
    """The daemon's launch request for the full build on `profile` (session: the dir's name).

    `wrap` is a program and its first arguments (e.g. the fake browser and its mode) that get
    the real command line appended and the real executable in `$FAKE_BROWSER_REAL`.
    """
    config = parse_config({"browser": {"user_agent": user_agent, "start_timeout": start_timeout}})
    req = build_request(config, session or profile.name, profile, SessionOptions())
    req = dataclasses.replace(req, url=url)
    if not wrap:
        return req
    return dataclasses.replace(
        req,
        executable=wrap[0],
        args=[*wrap[1:], *req.args],
        env={"FAKE_BROWSER_REAL": req.executable},
    )


async def launch(req: LaunchRequest, logs: Path | None = None) -> ChromiumHandle:
    """Start the browser of `req` (stderr into `logs`, default: `logs/` beside the profile);
    ready (pipe answers, page exists) or `BrowserError` with nothing left running."""
    launcher = ChromiumLauncher(logs or req.profile_dir.parent / "logs")
    async with asyncio.timeout(req.start_timeout + STOP_MARGIN):  # the launcher's own bound + abort
        return await launcher.launch(req)


@contextlib.asynccontextmanager
async def running(
    req: LaunchRequest, logs: Path | None = None, stop_timeout: float = 10.0
) -> AsyncIterator[ChromiumHandle]:
    """`async with running(request(dir)) as handle:` stopped, swept and reaped however the
    block ends (`ChromiumHandle.stop` raises if a process of the profile survives)."""
    handle = await launch(req, logs)
    try:
        yield handle
    finally:
        await handle.stop(stop_timeout)
