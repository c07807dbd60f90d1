"""What every benchmark script shares."""

from __future__ import annotations

import signal
import sys
from types import FrameType


def exit_on_sigterm() -> None:
    """Turn SIGTERM into `SystemExit`, so a stopped benchmark runs its `finally` blocks: the
    daemon it started is stopped (and stops its browsers), bare browsers are closed. Without
    this, SIGTERM ends Python at once and leaves them running."""

    def _exit(signum: int, frame: FrameType | None) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
