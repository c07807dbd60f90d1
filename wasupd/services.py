"""Production wiring: the launcher, page driver and profile hooks the daemon's runners use.

Also the host preparation done once at daemon start (child subreaper, leftovers of a daemon that
was killed) and the last-resort kill at a forced shutdown.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from wasupd.config import Config
from wasupd.sessions import Services
from wasupd.supervision import reaper
from wasupd.supervision.launcher import build_args, find_executable
from wasupd.supervision.process import ChromiumLauncher, sweep_profile
from wasupd.supervision.seams import (
    LaunchRequest,
    ProfileHooks,
    SessionDriver,
    SessionOptions,
    SystemClock,
)

log = structlog.get_logger("wasupd.services")


def build_request(
    config: Config, name: str, profile_dir: Path, options: SessionOptions
) -> LaunchRequest:
    """The launch request of session `name` with its per-session overrides."""
    b = config.browser
    build = options.build or b.build
    user_agent = options.user_agent or b.user_agent
    return LaunchRequest(
        session=name,
        profile_dir=profile_dir,
        executable=find_executable(b.executable if build == b.build else "", build),
        args=build_args(
            build=build,
            profile_dir=profile_dir,
            user_agent=user_agent,
            proxy=options.proxy or b.proxy,
            sandbox=b.sandbox,
            extra_args=[*b.extra_args, *options.extra_args],
        ),
        url=b.url,
        user_agent=user_agent,
        start_timeout=b.start_timeout,
    )


def make_profiles(config: Config, name: str) -> ProfileHooks:
    """Sealed, encrypted profile storage for session `name`."""
    from wasupd.profiles.lifecycle import SealedProfiles

    return SealedProfiles.from_config(config, name)


def make_driver(config: Config, name: str, options: SessionOptions) -> SessionDriver:
    """The WhatsApp Web driver for session `name`."""
    from wasupd.browser.driver import WhatsAppDriver

    return WhatsAppDriver(name, config=config, options=options)


def build_services(config: Config) -> Services:
    """The production collaborators of every session runner."""
    return Services(
        launcher=ChromiumLauncher(config.runtime.browser_logs),
        driver_factory=lambda name, options: make_driver(config, name, options),
        profiles_factory=lambda name: make_profiles(config, name),
        build_request=lambda name, d, options: build_request(config, name, d, options),
        clock=SystemClock(),
    )


async def prepare_host(config: Config) -> None:
    """Daemon start: become a child subreaper, kill leftovers, recover leftover live profiles."""
    reaper.become_subreaper()
    root = config.runtime.live_profiles
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    for profile in sorted(p for p in root.iterdir() if p.is_dir()):
        killed = await asyncio.to_thread(sweep_profile, profile)
        if killed:
            log.warning("leftover_browser_killed", profile=str(profile), pids=killed)
    from wasupd.profiles.lifecycle import recover_leftovers

    await recover_leftovers(config)


async def kill_all_browsers(config: Config) -> None:
    """Forced shutdown: SIGKILL every browser using a live profile of this daemon."""
    root = config.runtime.live_profiles
    if root.is_dir():
        for profile in root.iterdir():
            await asyncio.to_thread(sweep_profile, profile, 2.0)
