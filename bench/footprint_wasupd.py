"""The wasupd side of bench/footprint.py: a fresh daemon with N sessions at the QR.

The daemon runs from tests/helpers/daemon.py (the same `DaemonProcess` and test config the
sessions benchmark uses), with its dirs under the round's own directory, so the last-resort
sweep of bench/footprint.py finds it (its `--config` names that directory) and its browsers.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from bench.footprint_tree import TreeMem, measure
from bench.footprint_wwebjs import SETTLE
from tests.helpers.daemon import DaemonProcess, base_config
from tests.helpers.waiting import eventually
from wasupd.config import BrowserBuild

# Set when the run is stopped (Ctrl-C, SIGTERM): a round waiting in its thread gives up at once
# and stops its daemon, instead of waiting out its timeout.
STOPPING = threading.Event()


def _states(d: DaemonProcess) -> list[str]:
    """Every session's state; raises once the run is being stopped."""
    if STOPPING.is_set():
        raise RuntimeError("stopped")
    return [s["state"] for s in d.call("session.list")]


def wasupd_round(
    url: str, build: BrowserBuild, n: int, root: Path, timeout: float, extra: tuple[str, ...] = ()
) -> tuple[TreeMem, float]:
    """Start a daemon, create `n` sessions of `build` (with `extra` Chromium args), wait until all are at the QR (bounded
    by `timeout`), settle, measure the daemon's tree, stop the daemon (which stops its
    browsers); (tree, seconds from the first create to the last QR)."""
    runtime, state = root / "run", root / "state"
    runtime.mkdir(parents=True)
    state.mkdir()
    config = base_config(
        runtime,
        state,
        browser={"url": url},
        daemon={"log_level": "warning", "start_stagger": 0.05},
    )
    d = DaemonProcess(root, config).start()
    try:
        t0 = time.perf_counter()
        names = [f"s{i}" for i in range(n)]
        for name in names:
            options = {"build": build, **({"extra_args": list(extra)} if extra else {})}
            d.call("session.create", name=name, options=options)
        eventually(
            lambda: _states(d),
            timeout,
            f"all {n} {build} sessions at the QR",
            ok=lambda states: states.count("qr") == n,
            interval=0.1,
        )
        ready = time.perf_counter() - t0
        time.sleep(SETTLE)  # the same settle every side gets
        assert d.proc is not None
        return measure(d.proc.pid, root), ready
    finally:
        d.stop()
