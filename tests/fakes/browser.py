#!/usr/bin/env python3
"""A fake browser for faults a real Chromium does not show on cue.

Usage: browser.py MODE [chromium args...]. Modes that need a ready browser wrap the real
Chromium (it inherits the DevTools pipe on fds 3/4), then misbehave around it:

  ignore_term  the top process ignores SIGTERM (only SIGKILL ends it); Chromium runs as its child
  double_fork  a grandchild escapes the process group (setsid) holding the profile dir; then exec Chromium
  exit0        exit 0 at once (what a second Chromium on a locked profile does)
  hang         never answer DevTools
  memory       on each SIGUSR1 the top process grows by 256 MiB (16 MiB steps); Chromium is its child
  fds          open 3000 extra fds, then exec Chromium (they are inherited)
  stale_lock   leave Singleton* links of a container that no longer exists, then exec Chromium
               (the full build refuses such a profile: exit 21)

The real Chromium is $FAKE_BROWSER_REAL, else `chromium` on PATH.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

mode, args = sys.argv[1], sys.argv[2:]
real = os.environ.get("FAKE_BROWSER_REAL") or shutil.which("chromium") or "/usr/bin/chromium"
profile = next((a for a in args if a.startswith("--user-data-dir=")), "--user-data-dir=none")
GROW_STEP, GROW_BY = 16 << 20, 256 << 20


def run_chromium_as_child() -> subprocess.Popen[bytes]:
    """Chromium as our child, in our group, with the DevTools pipe."""
    return subprocess.Popen([real, *args], pass_fds=(3, 4), start_new_session=False)


def grow_on_cue() -> None:
    """Each SIGUSR1: allocate and touch 256 MiB more, step by step; then wait for the next."""
    ballast = []
    signal.signal(signal.SIGUSR1, lambda *_: None)
    while True:
        signal.pause()
        for _ in range(GROW_BY // GROW_STEP):
            chunk = bytearray(GROW_STEP)
            for i in range(0, len(chunk), 4096):
                chunk[i] = 1  # touch every page so it is resident
            ballast.append(chunk)


if mode == "exit0":
    sys.exit(0)
if mode == "hang":
    while True:
        time.sleep(3600)
if mode == "double_fork":
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(
                sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", profile]
            )
        os._exit(0)
    os.wait()
    os.execv(real, [real, *args])
if mode == "fds":
    for _ in range(3000):
        fd = os.open(os.devnull, os.O_RDONLY)
        os.set_inheritable(fd, True)
    os.execv(real, [real, *args])
if mode == "stale_lock":
    directory = profile.split("=", 1)[1]
    os.makedirs(directory, exist_ok=True)
    for name, target in (
        ("SingletonLock", "gone-container-4242"),
        ("SingletonCookie", "1234567890"),
        ("SingletonSocket", "/tmp/.org.chromium.Chromium.gone/SingletonSocket"),
    ):
        os.symlink(target, os.path.join(directory, name))
    os.execv(real, [real, *args])
if mode == "ignore_term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    run_chromium_as_child().wait()
    while True:  # outlive the browser: only SIGKILL ends this process
        time.sleep(3600)
if mode == "memory":
    run_chromium_as_child()
    grow_on_cue()
sys.exit(f"unknown mode {mode}")
