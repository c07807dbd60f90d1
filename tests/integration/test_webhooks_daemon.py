"""Webhook dead letters through a real daemon: listed, retried by id or all, over RPC and CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess
from tests.helpers.waiting import eventually
from tests.helpers.webhooks import Receiver
from wasupd.errors import InvalidArgument

WASUPCTL = [sys.executable, "-m", "wasupctl.app"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver([400] * 1000)  # refuses everything until `answer_ok`
    yield rx
    rx.stop()


def ctl(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WASUPCTL, "--socket", str(d.socket), *args], capture_output=True, text=True, timeout=60
    )


def test_dead_letters_are_listed_and_retried_by_id_or_all(
    daemon_factory: Any, receiver: Receiver
) -> None:
    """State events refused with 400 end failed; `webhooks --retry ID` and `--retry-all` send
    them again (same ids) once the receiver is fixed; wrong input is a clear error."""
    d = daemon_factory(
        webhooks={"url": receiver.url, "events": ["state"]},
        browser={"executable": "/bin/false"},  # a browser that dies at once: state events
        restart={"max_failures": 1},
    )
    d.call("session.create", name="w")
    failed = eventually(
        lambda: (f := d.call("webhooks.list", state="failed", limit=100)) and len(f) >= 2 and f,
        30,
        "failed deliveries",
    )
    ids = [r["id"] for r in failed]
    listed = ctl(d, "webhooks")
    assert listed.returncode == 0 and ids[0] in listed.stdout

    with pytest.raises(InvalidArgument, match="ids to retry, or all=true"):
        d.call("webhooks.retry")
    with pytest.raises(InvalidArgument):
        d.call("webhooks.retry", ids=[ids[0]], all=True)
    unknown = ctl(d, "webhooks", "--retry", "nope")
    assert unknown.returncode == 1 and "skipped nope: not a failed delivery" in unknown.stderr

    receiver.answer_ok()
    one = ctl(d, "webhooks", "--retry", ids[0])
    assert one.returncode == 0 and "requeued 1 delivery" in one.stdout, one.stderr
    eventually(lambda: len(receiver.by_id()[ids[0]]) == 2, 30, "the retried delivery")
    rest = ctl(d, "--json", "webhooks", "--retry-all")
    assert rest.returncode == 0, rest.stderr
    eventually(lambda: d.call("webhooks.list", state="failed", limit=100) == [], 30, "all sent")
    assert set(ids) <= set(receiver.by_id())
