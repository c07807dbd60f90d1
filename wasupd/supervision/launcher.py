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

from wasupd.config import BrowserBuild, SandboxMode
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

# Chromium features off in every launch (one `--disable-features`, built by `build_args`:
# Chromium keeps only the last of a repeated switch).
BASE_DISABLED_FEATURES = (
    "Translate",
    "MediaRouter",
    "OptimizationHints",
    "InterestFeedContentSuggestions",
)

# Memory savers that leave the page's view of the world alone (measured: docs/chromium.md).
LEAN_FLAGS = (
    "--disable-gpu",
    "--renderer-process-limit=2",
    # No initial about:blank tab: the session's page is created over DevTools anyway, and the
    # unused tab costs a renderer (bench/flags.py: 9-13 MiB PSS and one process, both builds).
    "--no-startup-window",
    "--disk-cache-size=1",
    "--media-cache-size=1",
)
# Feature switches among the memory savers, per build (bench/flags.py, dirty PSS of the tree).
LEAN_ENABLED_FEATURES: dict[BrowserBuild, tuple[str, ...]] = {
    # The network service as a thread of the browser instead of a utility process of its own:
    # -16 MiB (full), -9 MiB (headless shell). On Linux that process runs unsandboxed anyway
    # (Chromium's NetworkServiceSandbox feature is off by default there), so no boundary is
    # lost; a crash of it now ends the browser, which the session's restart already covers.
    "full": ("NetworkServiceInProcess2",),
    "headless-shell": ("NetworkServiceInProcess2",),
}
LEAN_DISABLED_FEATURES: dict[BrowserBuild, tuple[str, ...]] = {
    # --headless=new runs the desktop browser, which keeps its WebUI omnibox popup
    # (chrome://omnibox-popup.top-chrome) loaded in a renderer of its own though nothing can
    # show it: -41 MiB. The headless shell has no omnibox. Without that renderer the full
    # build starts a spare one for the next navigation instead (-6.7 MiB without it); a
    # session navigates once, so the spare never pays.
    "full": ("WebUIOmniboxPopup", "WebUIOmniboxAimPopup", "SpareRendererForSitePerProcess"),
    "headless-shell": (),
}


def find_executable(configured: str, build: BrowserBuild) -> str:
    """The configured path (or command name), else the first Chromium of `build` on PATH.

    Raises `BrowserError` naming the package to install when there is none.
    """
    if configured:
        path = shutil.which(configured) or configured
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise BrowserError(
                f"browser.executable {configured!r} is not an executable file;"
                " fix the path or leave it empty to auto-detect"
            )
        return path
    for name in CANDIDATES[build]:
        found = shutil.which(name)
        if found:
            return found
    other: BrowserBuild = "headless-shell" if build == "full" else "full"
    hint = ""
    if any(shutil.which(n) for n in CANDIDATES[other]):
        hint = f"; or set browser.build = {other!r}, which is installed"
    raise BrowserError(
        f"no {build} Chromium found (looked for {', '.join(CANDIDATES[build])}); install it with"
        f" `apt-get install {PACKAGES[build]}` or set browser.executable{hint}"
    )


def sandbox_available(proc_sys: Path = Path("/proc/sys")) -> tuple[bool, str]:
    """Whether Chromium's sandbox can work here, and why not when it cannot.

    Chromium refuses its sandbox as root; as another user it needs unprivileged user namespaces
    (the setuid helper is not shipped by Debian and does not work under NoNewPrivileges).
    """
    if os.geteuid() == 0:
        return False, "running as root (Chromium refuses its sandbox as root)"
    for knob, name in (
        ("kernel/unprivileged_userns_clone", "kernel.unprivileged_userns_clone"),
        ("user/max_user_namespaces", "user.max_user_namespaces"),
    ):
        try:
            value = (proc_sys / knob).read_text().strip()
        except OSError:  # the knob does not exist on this kernel: no restriction from it
            continue
        if value == "0":
            return False, f"user namespaces are disabled ({name}=0)"
    return True, ""


_warned: set[str] = set()


def sandbox_flag(mode: SandboxMode) -> list[str]:
    """`["--no-sandbox"]` when the sandbox is off or cannot work here (warned once per reason).

    `on` where the sandbox cannot work is a `BrowserError`: Chromium would refuse to start.
    """
    if mode == "on" or (mode == "auto" and sandbox_available()[0]):
        usable, why = sandbox_available()
        if not usable:
            raise BrowserError(
                f"browser.sandbox = on, but Chromium's sandbox cannot work here: {why};"
                " run wasupd as its own non-root user, or set browser.sandbox = auto"
            )
        return []
    why = sandbox_available()[1] if mode == "auto" else "browser.sandbox = off"
    if why not in _warned:
        _warned.add(why)
        log.warning("sandbox_disabled", reason=why, hint="run wasupd as its own non-root user")
    return ["--no-sandbox"]


def build_args(
    *,
    build: BrowserBuild,
    profile_dir: Path,
    user_agent: str,
    proxy: str = "",
    sandbox: SandboxMode = "auto",
    extra_args: tuple[str, ...] | list[str] = (),
    lean: bool = True,
) -> list[str]:
    """The command line (without the executable) for one session's browser: headless mode of the
    build, `BASE_FLAGS`, `LEAN_FLAGS` (unless `lean` is false), one `--disable-features` and
    one `--enable-features` (the base and the build's lean features), the profile dir, user
    agent, proxy, sandbox, then `extra_args` last (Chromium keeps the last value of a repeated
    switch, so they override ours)."""
    args = ["--headless=new" if build == "full" else "--headless", *BASE_FLAGS]
    args.extend(LEAN_FLAGS if lean else ())  # `lean=False`: the baseline bench/flags.py measures
    args.extend(feature_switches(build, lean))
    args.append(f"--user-data-dir={profile_dir}")
    if user_agent:
        args.append(f"--user-agent={user_agent}")
    if proxy:
        args.append(f"--proxy-server={proxy}")
    args.extend(sandbox_flag(sandbox))
    if "--no-startup-window" not in args:
        args.append("about:blank")  # the initial tab; ours is created over DevTools
    args.extend(extra_args)
    return args


def feature_switches(build: BrowserBuild, lean: bool) -> list[str]:
    """`--disable-features` (always: `BASE_DISABLED_FEATURES`) and `--enable-features` (only when
    some are enabled) for `build`, with the build's lean features unless `lean` is false."""
    disabled = [*BASE_DISABLED_FEATURES, *(LEAN_DISABLED_FEATURES[build] if lean else ())]
    enabled = LEAN_ENABLED_FEATURES[build] if lean else ()
    switches = ["--disable-features=" + ",".join(disabled)]
    if enabled:
        switches.append("--enable-features=" + ",".join(enabled))
    return switches
