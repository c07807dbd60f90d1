"""Run the simulator as a subprocess (so blocking tests can drive it) and call its control API."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest


class SimProcess:
    """`python -m wasupd.sim` on a free port, with a blocking control client."""

    def __init__(self, time_factor: float, accounts: list[str], *, lid: bool = False) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wasupd.sim",
                "--port",
                "0",
                "--time-factor",
                str(time_factor),
                "--accounts",
                ",".join(accounts),
                *([] if lid else ["--no-lid"]),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url

    def call(self, action: str, **params: Any) -> Any:
        """One control call; raises RuntimeError with the simulator's message on refusal."""
        req = urllib.request.Request(
            self.url + "_sim/" + action,
            data=json.dumps(params).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())["result"]
        except urllib.error.HTTPError as exc:
            raise RuntimeError(json.loads(exc.read()).get("error")) from None

    def stop(self) -> None:
        """SIGTERM and reap."""
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., SimProcess]]:
    """`sim_factory(time_factor=0.05, accounts=[...], lid=False)`; stopped at teardown.

    The accounts are old-world (`lid=False`: not LID-migrated) unless `lid=True`: the driver
    does not address by LID yet, and its tests predate LIDs."""
    made: list[SimProcess] = []

    def factory(
        time_factor: float = 0.05, accounts: list[str] | None = None, *, lid: bool = False
    ) -> SimProcess:
        s = SimProcess(time_factor, accounts or [], lid=lid)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.stop()


def wait_until(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `fn` until it returns something truthy; AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)  # polling another process's state, bounded by `timeout`
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
