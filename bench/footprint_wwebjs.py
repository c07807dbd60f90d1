"""The whatsapp-web.js side of bench/footprint.py: N clients in one Node process at the QR.

The package, Node and the TLS identity that makes https://web.whatsapp.com/ the simulator come
from tests/wwebjs/harness.py (the same installer and steering flags as the tests). Besides the
two steering flags, the clients get only what whatsapp-web.js's documentation gives: LocalAuth,
`executablePath` (Debian's Chromium), and `--no-sandbox` when running as root; its documented
`authTimeoutMs` is raised to the round's bound, so a loaded machine does not end a round early.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.footprint_tree import TreeMem, adopted_crashpads, measure, naming
from tests.wwebjs.harness import (
    TlsIdentity,
    ensure_node,
    ensure_wwebjs,
    make_tls,
    steering_args,
)
from wasupd.sim import SimServer
from wasupd.supervision.reaper import reap_orphans

CLIENTS_JS = Path(__file__).with_name("wwebjs_clients.js")
SETTLE = 3.0  # seconds between the last QR and the measurement, the same on every side
STOP_S = 20.0


@dataclass(frozen=True, slots=True)
class WwebjsSetup:
    """Node, the installed package, and the simulator served as https://web.whatsapp.com/."""

    node: str
    modules: Path
    sim: SimServer
    tls: TlsIdentity

    @classmethod
    @contextlib.asynccontextmanager
    async def serving(cls) -> AsyncIterator[WwebjsSetup]:
        """Install (once, cached) and serve; the simulator stops at exit."""
        node, npm = ensure_node()
        modules = await asyncio.to_thread(ensure_wwebjs, npm)
        tmp = Path(tempfile.mkdtemp(prefix="wasupd-footprint-tls-"))
        try:
            tls = make_tls(tmp)
            async with SimServer(time_factor=1.0, ssl_context=tls.context) as sim:
                yield cls(node, modules, sim, tls)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @contextlib.asynccontextmanager
    async def plain_sim(self) -> AsyncIterator[str]:
        """The same simulator over plain HTTP, for wasupd (its URL)."""
        async with SimServer(time_factor=1.0) as sim:
            yield sim.url


async def wwebjs_round(
    setup: WwebjsSetup, n: int, root: Path, timeout: float
) -> tuple[TreeMem, float]:
    """Start `n` clients in one Node, wait for every first QR (bounded by `timeout`), settle,
    measure Node's tree, stop it all; (tree, seconds to the last QR)."""
    root.mkdir(parents=True)
    config = root / "config.json"
    args = steering_args(setup.sim.port, setup.tls)
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # whatsapp-web.js's documented flag for running as root
    config.write_text(
        json.dumps(
            {
                "chromium": shutil.which("chromium") or "/usr/bin/chromium",
                "dataPath": str(root / "auth"),
                "clients": n,
                "authTimeoutMs": int(timeout * 1000),
                "args": args,
            }
        )
    )
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        setup.node,
        str(CLIENTS_JS),
        str(config),  # names `root`, so a last-resort sweep finds Node too
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "NODE_PATH": str(setup.modules)},
        cwd=root,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):
            await _all_qr(proc, n)
        ready = time.perf_counter() - t0
        await asyncio.sleep(SETTLE)  # the same settle every side gets
        # The crashpad handlers of Node's Chromiums were adopted by this process (a subreaper,
        # as the daemon is for its own), so they count here as they do in the daemon's tree.
        crashpads = [p.pid for p in adopted_crashpads()]
        return await asyncio.to_thread(measure, proc.pid, root, crashpads), ready
    finally:
        await _stop(proc, root)


async def _all_qr(proc: asyncio.subprocess.Process, n: int) -> None:
    """Read events until every client has shown its QR; a fatal event or Node's exit raises."""
    assert proc.stdout is not None
    seen: set[int] = set()
    while len(seen) < n:
        line = await proc.stdout.readline()
        if not line:
            raise RuntimeError(f"Node exited ({await proc.wait()}) with {len(seen)}/{n} at the QR")
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("event") == "fatal":
                raise RuntimeError(f"client {event['client']}: {event['error'][:300]}")
            if event.get("event") == "qr":
                seen.add(int(event["client"]))


async def _stop(proc: asyncio.subprocess.Process, root: Path) -> None:
    """End of stdin destroys the clients (they close their Chromium); then Node's group and
    anything still naming `root` (puppeteer starts each Chromium in a group of its own) are
    killed, with the crashpad handlers this process adopted, and all of it reaped (orphans
    that came to this subreaper too)."""
    if proc.stdin is not None:
        proc.stdin.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(STOP_S):
            await proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()
    left = naming(root) + adopted_crashpads()
    for p in left:
        with contextlib.suppress(psutil.Error):
            p.kill()
    await asyncio.to_thread(psutil.wait_procs, left, 10)
    # Helpers whose parent exited were re-parented to this subreaper: reap them (Node itself is
    # reaped above, so no exit status anyone waits for is taken).
    reap_orphans()
