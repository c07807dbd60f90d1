"""Which Chromium to run and with which flags.

The flags keep a long-lived headless tab quiet and lean on a closed network without changing
what the page sees: no background networking, no first-run or component updates, no timer
throttling (WhatsApp's keepalive must not be slowed), no automation banner, an explicit
profile dir, and DevTools only over the pipe (no TCP port another local user could reach).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import structlog

from wasupd.config import BrowserBuild
from wasupd.errors import BrowserError

log = structlog.get_logger("wasupd.launcher")

CANDIDATES: dict[BrowserBuild, tuple[str, ...]] = {
    "full": ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"),
    "headless-shell": ("chromium-headless-shell", "chrome-headless-shell"),
}
PACKAGES: dict[BrowserBuild, str] = {
    "full": "chromium",
    "headless-shell": "chromium-headless-shell",
}

# Quiet, lean, closed-network flags (reference: puppeteer's defaults, trimmed for a long-lived tab).
BASE_FLAGS = (
    "--remote-debugging-pipe",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--disable-features=Translate,MediaRouter,OptimizationHints,InterestFeedContentSuggestions",
    "--disable-blink-features=AutomationControlled",
    "--disable-hang-monitor",
    "--disable-popup-blocking",
    "--disable-prompt-on-repost",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
    "--mute-audio",
    "--hide-scrollbars",
    "--no-pings",
    # WhatsApp's keepalive timers must run at full rate in a tab nobody looks at.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    # /dev/shm is small in containers and under PrivateTmp; use /tmp instead.
    "--disable-dev-shm-usage",
)

# Memory savers that leave the page's view of the world alone (measured: docs/chromium.md).
LEAN_FLAGS = (
    "--disable-gpu",
    "--disable-software-rasterizer",
    "--renderer-process-limit=2",
    "--disk-cache-size=1",
    "--media-cache-size=1",
)


def find_executable(configured: str, build: BrowserBuild) -> str:
    """The configured path, else the first Chromium of `build` on PATH; `BrowserError` if none."""
    if configured:
        path = shutil.which(configured) or configured
        if not os.access(path, os.X_OK):
            raise BrowserError(f"browser.executable {configured!r} is not an executable file")
        return path
    for name in CANDIDATES[build]:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserError(
        f"no {build} Chromium found (looked for {', '.join(CANDIDATES[build])}); install it with"
        f" `apt-get install {PACKAGES[build]}` or set browser.executable"
    )


def sandbox_available() -> tuple[bool, str]:
    """Whether Chromium's sandbox can work here, and why not when it cannot."""
    if os.geteuid() == 0:
        return False, "running as root (Chromium refuses its sandbox as root)"
    try:
        text = Path("/proc/sys/kernel/unprivileged_userns_clone").read_text().strip()
        if text == "0":
            return (
                False,
                "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0)",
            )
    except OSError:
        pass
    try:
        if Path("/proc/sys/user/max_user_namespaces").read_text().strip() == "0":
            return False, "user namespaces are disabled (user.max_user_namespaces=0)"
    except OSError:
        pass
    return True, ""


_warned: set[str] = set()


def build_args(
    *,
    build: BrowserBuild,
    profile_dir: Path,
    user_agent: str,
    proxy: str = "",
    sandbox: str = "auto",
    extra_args: tuple[str, ...] | list[str] = (),
) -> list[str]:
    """The command-line flags (without the executable) for one session's browser."""
    args = ["--headless=new" if build == "full" else "--headless", *BASE_FLAGS, *LEAN_FLAGS]
    args.append(f"--user-data-dir={profile_dir}")
    if user_agent:
        args.append(f"--user-agent={user_agent}")
    if proxy:
        args.append(f"--proxy-server={proxy}")
    if sandbox == "off" or (sandbox == "auto" and not sandbox_available()[0]):
        why = sandbox_available()[1] if sandbox == "auto" else "browser.sandbox = off"
        if why not in _warned:
            _warned.add(why)
            log.warning("sandbox_disabled", reason=why, hint="run wasupd as its own non-root user")
        args.append("--no-sandbox")
    args.extend(extra_args)
    args.append("about:blank")
    return args
