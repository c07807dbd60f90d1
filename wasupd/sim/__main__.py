"""`python -m wasupd.sim --port N`: serve the simulator on loopback and print its URL."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from wasupd.sim.server import SimServer


async def serve(args: argparse.Namespace) -> None:
    sim = await SimServer(port=args.port, time_factor=args.time_factor).start()
    for phone in filter(None, args.accounts.split(",")):
        sim.world.add_account(phone)
    print(sim.url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sim.stop()


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m wasupd.sim", description=__doc__)
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    p.add_argument(
        "--time-factor", type=float, default=1.0, help="scale every duration (0.05 for tests)"
    )
    p.add_argument("--accounts", default="", help="comma-separated phone numbers to register")
    asyncio.run(serve(p.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
