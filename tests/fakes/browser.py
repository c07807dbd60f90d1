#!/usr/bin/env python3
"""A fake browser for faults a real Chromium does not show on cue.

Usage: browser.py MODE [chromium args...]. Modes that need a ready browser wrap the real
Chromium (it inherits the DevTools pipe on fds 3/4), then misbehave around it:

  ignore_term  the top process ignores SIGTERM (only SIGKILL ends it); Chromium runs as its child
  double_fork  a grandchild escapes the process group (setsid) holding the profile dir; then exec Chromium
  exit0        exit 0 at once (what a second Chromium on a locked profile does)
  hang         never answer DevTools
  memory       hold 400 MiB in the top process; Chromium runs as its child
  fds          open 3000 extra fds, then exec Chromium (they are inherited)
"""

import os
import shutil
import signal
import subprocess
import sys
import time

mode, args = sys.argv[1], sys.argv[2:]
real = shutil.which("chromium") or "/usr/bin/chromium"
profile = next((a for a in args if a.startswith("--user-data-dir=")), "--user-data-dir=none")

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
if mode in ("ignore_term", "memory"):
    if mode == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ballast = bytearray(400 << 20) if mode == "memory" else b""
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1  # touch every page so it counts
    child = subprocess.Popen([real, *args], pass_fds=(3, 4), start_new_session=False)
    child.wait()
    while True:  # outlive the browser: only SIGKILL ends this process
        time.sleep(3600)
sys.exit(f"unknown mode {mode}")
