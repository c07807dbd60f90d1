"""RPC round-trip benchmark: wasupd's `daemon.status` against a bare asyncio newline-JSON echo server.

Both servers run side by side in this one run, each in its own process (so both pay the same
cross-process wake-ups), are measured with the same client code from this process, and the
figures are reported as medians/percentiles and ratios (this machine is shared and noisy).

    python bench/rpc.py [--requests N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import exit_on_sigterm
from tests.helpers.daemon import DaemonProcess, base_config, make_dirs

REQUEST = {"jsonrpc": "2.0", "id": 1, "method": "daemon.status"}


async def echo_server(path: str) -> asyncio.AbstractServer:
    """The baseline: parse each JSON line and answer with a JSON-RPC result, nothing else."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            req = json.loads(line)
            writer.write(
                json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": {}}).encode() + b"\n"
            )
            await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(handle, path=path)


def serve_echo(path: str) -> None:
    """The echo server's own process: serve until SIGTERM."""

    async def forever() -> None:
        server = await echo_server(path)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(forever())


def accepts(path: str) -> bool:
    """Whether a Unix socket server at `path` accepts a connection now."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


async def client(path: str, n: int, latencies: list[float]) -> None:
    """One connection doing `n` sequential round trips."""
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 24)
    line = json.dumps(REQUEST).encode() + b"\n"
    for _ in range(n):
        t0 = time.perf_counter()
        writer.write(line)
        reply = await reader.readline()
        latencies.append(time.perf_counter() - t0)
        assert b'"result"' in reply, reply[:200]
    writer.close()


async def measure(path: str, clients: int, total: int) -> dict[str, float]:
    """p50/p99 latency (ms) and requests/s for `clients` concurrent connections."""
    latencies: list[float] = []
    per = max(1, total // clients)
    await client(path, 50, [])  # warm up
    t0 = time.perf_counter()
    await asyncio.gather(*(client(path, per, latencies) for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "rps": len(latencies) / elapsed,
    }


async def run(total: int, rounds: int) -> list[dict[str, object]]:
    root, runtime, state = make_dirs()
    daemon = DaemonProcess(
        root, base_config(runtime, state, daemon={"log_level": "warning"})
    ).start()
    echo_path = os.path.join(tempfile.mkdtemp(prefix="wasupd-bench-"), "echo.sock")
    echo = subprocess.Popen([sys.executable, __file__, "--serve-echo", echo_path])
    deadline = time.monotonic() + 10
    # Bound and listening are two steps: wait for a connection to be accepted, not for the file.
    while not accepts(echo_path):
        if time.monotonic() > deadline or echo.poll() is not None:
            raise RuntimeError("the echo server did not start")
        await asyncio.sleep(0.05)  # waiting for another process to listen, bounded
    rows: list[dict[str, object]] = []
    try:
        for clients in (1, 32):
            for name, path in (
                ("bare echo", echo_path),
                ("wasupd daemon.status", str(daemon.socket)),
            ):
                runs = [await measure(path, clients, total) for _ in range(rounds)]
                rows.append(
                    {
                        "server": name,
                        "clients": clients,
                        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
                        "rps": statistics.median(r["rps"] for r in runs),
                    }
                )
    finally:
        echo.terminate()
        echo.wait(10)
        daemon.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=6400, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per cell (median)")
    parser.add_argument("--serve-echo", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        serve_echo(args.serve_echo)
        return
    rows = asyncio.run(run(args.requests, args.rounds))
    print(f"{'server':<24}{'clients':>8}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}")
    for r in rows:
        print(
            f"{r['server']:<24}{r['clients']:>8}{r['p50_ms']:>10.3f}{r['p99_ms']:>10.3f}{r['rps']:>10.0f}"
        )
    for clients in (1, 32):
        bare, ours = (r for r in rows if r["clients"] == clients)
        ratio = float(ours["p50_ms"]) / float(bare["p50_ms"])  # type: ignore[arg-type]
        print(f"clients={clients}: p50 ratio wasupd/bare = {ratio:.2f} (target <= 1.5)")
    ours32 = next(r for r in rows if r["clients"] == 32 and r["server"] != "bare echo")
    print(f"wasupd with 32 clients: {ours32['rps']:.0f} req/s (target > 5000)")


if __name__ == "__main__":
    exit_on_sigterm()
    main()
