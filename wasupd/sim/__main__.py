"""`python -m wasupd.sim`: serve the WhatsApp Web simulator on loopback and print its URL.

The URL is the only line on stdout; the server runs until SIGTERM or SIGINT (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from wasupd.sim.server import DEFAULT_PAGE_WEIGHT_MIB, SimServer


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m wasupd.sim", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    p.add_argument(
        "--time-factor", type=float, default=1.0, help="scale every duration (0.05 for tests)"
    )
    p.add_argument("--accounts", default="", help="comma-separated phone numbers to register")
    p.add_argument(
        "--no-lid",
        action="store_true",
        help="register --accounts in the old world: not LID-migrated (numbers only)",
    )
    p.add_argument(
        "--page-weight-mib",
        type=int,
        default=DEFAULT_PAGE_WEIGHT_MIB,
        help=f"JS heap each page holds at rest (default {DEFAULT_PAGE_WEIGHT_MIB})",
    )
    p.add_argument(
        "--no-auto-read", action="store_true", help="recipients never read by themselves"
    )
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Start, register the accounts, print the URL, wait for a signal, stop."""
    sim = SimServer(
        host=args.host,
        port=args.port,
        time_factor=args.time_factor,
        page_weight_mib=args.page_weight_mib,
        auto_read=not args.no_auto_read,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with sim:
        for phone in filter(None, (a.strip() for a in args.accounts.split(","))):
            await sim.control("add_account", {"phone": phone, "lid": not args.no_lid})
        print(sim.url, flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Entry point; 0 after a clean stop, 2 for a bad argument."""
    args = parse(argv)
    try:
        asyncio.run(serve(args))
    except (ValueError, OSError) as exc:
        print(f"python -m wasupd.sim: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
