"""Fixtures shared by every test: leak checks, the Chromium executable, real daemons."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Generator, Iterator

import psutil
import pytest

from tests.helpers.daemon import TMP_PREFIX, daemon_factory  # noqa: F401 - fixture
from tests.helpers.postgres import postgres_db, postgres_server, store_target  # noqa: F401
from tests.helpers.service_env import service_env  # noqa: F401 - fixture
from tests.helpers.sim import sim_factory  # noqa: F401 - fixture
from tests.helpers.waiting import NotYet, eventually


def pytest_configure(config: pytest.Config) -> None:
    """Undo an inherited SIG_IGN for SIGINT (a shell's background job without job control),
    and register the `service_user` marker.

    Processes the tests start would inherit it, and the tests that press Ctrl-C on them (SIGINT)
    would then see it ignored, which no terminal user sees.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line(
        "markers",
        "service_user: runs code as another user (setpriv, needs root); .ci/run repeats these"
        " from a private clone, where the checkout is unreadable to that user",
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the call phase's report on the item, so fixtures can tell at teardown that it failed."""
    report = yield
    if report.when == "call":
        item.call_report = report  # type: ignore[attr-defined]
    return report


def browser_processes(marker: str = "") -> list[psutil.Process]:
    """Live (non-zombie) processes with a `--user-data-dir=` naming a path containing `marker`."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["pid"] == me or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            parts = proc.info["cmdline"] or []
            if any(p.startswith("--user-data-dir=") and marker in p for p in parts):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def zombie_children() -> list[psutil.Process]:
    """Zombie processes whose parent is this test process."""
    out = []
    for child in psutil.Process().children(recursive=False):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.NoSuchProcess:
            continue
    return out


@pytest.fixture(autouse=True)
def no_leaked_browsers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After every test, no browser started under this run's temp dirs may remain."""
    markers = (str(tmp_path_factory.getbasetemp()), f"/tmp/{TMP_PREFIX}")
    yield
    try:
        eventually(
            lambda: [p for m in markers for p in browser_processes(m)],
            10,
            "the test's browsers to exit",
            ok=lambda left: not left,
            interval=0.25,  # each probe scans the whole process table
        )
    except NotYet as exc:
        for proc in exc.last:  # clean up so one leak does not cascade, then fail
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        raise AssertionError(f"leaked browser processes: {[p.pid for p in exc.last]}") from None
