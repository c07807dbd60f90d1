"""The WhatsApp driver with real Chromium against the simulator (no daemon): linking and states.

Also holds `Rig`, the harness the other test_driver_* modules use: a simulator in this event
loop, one Chromium launched the production way, one `WhatsAppDriver` attached to it, and the
driver's reports collected so a test can wait on a condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import chromium
from wasupd.browser import driver as driver_module
from wasupd.browser import whatsapp as wa
from wasupd.browser.driver import WhatsAppDriver, classify, script_source
from wasupd.config import Config, parse_config
from wasupd.errors import BrowserError
from wasupd.services import build_request
from wasupd.sim import SimServer
from wasupd.supervision.process import ChromiumHandle
from wasupd.supervision.runner import SessionOptions
from wasupd.supervision.seams import DriverReport

A, B = "15550001111", "15550002222"
LAUNCH_TIMEOUT = 30.0


class Reports:
    """Every report of the driver, in order, with a bounded wait on a condition."""

    def __init__(self) -> None:
        self.items: list[DriverReport] = []
        self._changed = asyncio.Event()

    def add(self, report: DriverReport) -> None:
        self.items.append(report)
        self._changed.set()

    def of(self, kind: str, value: str | None = None) -> list[DriverReport]:
        """Reports of `kind` (and `value`), oldest first."""
        return [r for r in self.items if r.kind == kind and value in (None, r.value)]

    async def wait(self, pred: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
        """Wait until `pred()` is truthy; its value. Fails the test after `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                while not (value := pred()):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            kinds = [(r.kind, r.value) for r in self.items[-12:]]
            pytest.fail(f"timed out after {timeout} s waiting for {what or pred}; last: {kinds}")
        return value

    async def first(
        self, kind: str, value: str | None = None, timeout: float = 15.0
    ) -> DriverReport:
        """The first report of `kind` (and `value`), waiting for it."""
        found = await self.wait(lambda: self.of(kind, value), timeout, f"{kind} {value or ''}")
        return found[0]  # type: ignore[no-any-return]


@dataclasses.dataclass
class Rig:
    """A simulator, a browser, a driver attached to it, and its reports."""

    sim: SimServer
    handle: ChromiumHandle
    driver: WhatsAppDriver
    reports: Reports
    config: Config

    async def linked(self, phone: str = A) -> None:
        """Scan the first QR with `phone` and wait until the driver says `connected`."""
        qr = await self.reports.first("qr")
        await self.sim.control("scan", {"payload": qr.data["payload"], "phone": phone})
        await self.reports.first("state", "connected")

    async def evaluate(self, js: str, timeout: float = 10.0) -> Any:
        """Evaluate `js` in the page, bounded."""
        async with asyncio.timeout(timeout):
            return await self.handle.page.evaluate(js)


def make_config(url: str, **sections: dict[str, Any]) -> Config:
    """A validated config pointing at the simulator, with test-sized timeouts."""
    data: dict[str, Any] = {"browser": {"url": url, "start_timeout": LAUNCH_TIMEOUT}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data)


async def launch(config: Config, profile: Path, name: str = "t") -> ChromiumHandle:
    """Chromium for `profile`, launched like the daemon does (pipe, flags, own group)."""
    request = build_request(config, name, profile, SessionOptions())
    return await chromium.launch(request)


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path,
    *,
    time_factor: float = 0.05,
    sim: SimServer | None = None,
    profile: str = "profile",
    attach: bool = True,
    **sections: dict[str, Any],
) -> AsyncIterator[Rig]:
    """A `Rig`; everything it started is stopped on exit, even on failure."""
    own_sim = sim is None
    if sim is None:
        sim = await SimServer(time_factor=time_factor, page_weight_mib=0).start()
        for phone in (A, B):
            sim.world.add_account(phone, lid=False)
    handle: ChromiumHandle | None = None
    driver: WhatsAppDriver | None = None
    try:
        config = make_config(sim.url, **sections)
        async with asyncio.timeout(LAUNCH_TIMEOUT):
            handle = await launch(config, tmp_path / profile, profile)
        driver = WhatsAppDriver(profile, config=config, options=SessionOptions())
        reports = Reports()
        if attach:
            async with asyncio.timeout(LAUNCH_TIMEOUT):
                await driver.attach(handle, reports.add)
        yield Rig(sim, handle, driver, reports, config)
    finally:
        if driver is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await driver.detach()
        if handle is not None:
            await handle.stop(5.0)
        if own_sim:
            await sim.stop()


def test_state_mapping_covers_every_whatsapp_state() -> None:
    """Each Socket.state (docs/whatsapp-web.md §2a) maps to the session meaning docs/driver.md
    gives."""
    expect = {
        "OPENING": "",
        "UNLAUNCHED": "",
        "UNPAIRED": "qr",
        "UNPAIRED_IDLE": "idle",
        "PAIRING": "syncing",
        "CONFLICT": "degraded",
        "TIMEOUT": "degraded",
        "TOS_BLOCK": "failed",
        "SMB_TOS_BLOCK": "failed",
        "DEPRECATED_VERSION": "failed",
        "PROXYBLOCK": "failed",
    }
    assert {s: classify(s, False) for s in expect} == expect
    assert classify("CONNECTED", False) == "syncing"
    assert classify("CONNECTED", True) == "connected"


def test_whatsapp_names_live_only_in_whatsapp_py() -> None:
    """inject.js and driver.py name no WhatsApp module, state, selector or URL marker; the
    injected script gets them all filled in."""
    here = Path(driver_module.__file__).parent
    names = [
        *wa.MODULES.values(),
        *wa.STATES_WAITING,
        *wa.STATES_QR,
        *wa.STATES_FATAL,
        *wa.STATES_DEGRADED,
        wa.STATE_PAIRING,
        wa.STATE_CONNECTED,
        wa.SELECTOR_QR_CONTAINER,
        wa.SELECTOR_MAIN_UI,
        wa.LOGOUT_URL_MARKER,
        "data-icon",
        "window.require",
        "Debug.VERSION",
    ]
    for name in ("inject.js", "driver.py"):
        code = "\n".join(
            line
            for line in (here / name).read_text().splitlines()
            if not line.strip().startswith("#")
        )
        found = [n for n in names if re.search(rf"(?<![A-Za-z_]){re.escape(n)}(?![A-Za-z_])", code)]
        assert not found, f"{name} names {found}"
    source = script_source()
    assert "__CONFIG__" not in source and "__SURFACE__" not in source
    assert wa.MODULES["socket"] in source


async def test_qr_then_link_reports_syncing_connected_and_me(tmp_path: Path) -> None:
    """A first QR is rotation 0 with the 5-part payload and a ~60 s expiry; scanning it gives
    syncing, then connected with the account's own id."""
    async with rig(tmp_path) as r:
        qr = await r.reports.first("qr")
        payload = qr.data["payload"]
        assert qr.data["rotation"] == 0 and payload.startswith("2@") and payload.count(",") == 4
        dom = await r.evaluate(f"document.querySelector({wa.SELECTOR_QR_CONTAINER!r}).dataset.ref")
        assert payload == dom  # what the page shows is what we report
        # The first ref lives 60 s (docs/whatsapp-web.md §1b).
        assert 55 < qr.data["expires_at"] - time.time() <= 60
        await r.sim.control("scan", {"payload": payload, "phone": A})
        connected = await r.reports.first("state", "connected")
        states = [x.value for x in r.reports.of("state")]
        assert states.index("syncing") < states.index("connected")
        assert connected.data["me"] == f"{A}@c.us"
        assert r.driver.me == f"{A}@c.us"


async def test_qr_rotates_and_is_renewed_then_fails(tmp_path: Path) -> None:
    """Refs rotate (rotation 0..5, then a renewed generation starting at 0 again); after
    qr.max_rotations renewals the driver reports failed "QR not scanned"."""
    async with rig(tmp_path, time_factor=0.005, qr={"max_rotations": 1}) as r:
        failed = await r.reports.first("failed", timeout=30)
        assert "QR not scanned" in failed.data["reason"]
        rotations = [q.data["rotation"] for q in r.reports.of("qr")]
        assert rotations == [0, 1, 2, 3, 4, 5] * 2
        payloads = [q.data["payload"] for q in r.reports.of("qr")]
        assert len(set(payloads)) == 12  # every ref is new
        first, second = r.reports.of("qr")[:2]
        # Announced lives: 60 s for the first ref, 20 s for the next (shown 0.3 s later here).
        assert second.data["expires_at"] < first.data["expires_at"]


async def test_pairing_code_links_and_suppresses_qr(tmp_path: Path) -> None:
    """request_pairing_code returns an 8-character Crockford code, reports it as "code",
    stops QR reports, and the phone typing it links the session."""
    async with rig(tmp_path) as r:
        await r.reports.first("qr")
        async with asyncio.timeout(15):
            result = await r.driver.request_pairing_code(A, True)
        code = result["code"]
        assert len(code) == 8 and set(code) <= set("123456789ABCDEFGHJKLMNPQRSTVWXYZ")
        assert r.reports.of("code")[-1].data["code"] == code
        qrs = len(r.reports.of("qr"))
        await r.sim.control("enter_code", {"code": code, "phone": A})
        await r.reports.first("state", "connected")
        assert len(r.reports.of("qr")) == qrs


async def test_pairing_code_is_refreshed_by_the_page(tmp_path: Path) -> None:
    """While nobody types the code, the page renews it every qr.pairing_code_refresh seconds
    and each new code is reported."""
    async with rig(tmp_path, qr={"pairing_code_refresh": 0.5}) as r:
        await r.reports.first("qr")
        async with asyncio.timeout(15):
            first = (await r.driver.request_pairing_code(A, False))["code"]
        await r.reports.wait(lambda: len(r.reports.of("code")) >= 2, 10, "a renewed code")
        second = r.reports.of("code")[1].data["code"]
        assert second != first
        await r.sim.control("enter_code", {"code": second, "phone": A})
        await r.reports.first("state", "connected")


async def test_restore_without_qr_and_synced_race(tmp_path: Path) -> None:
    """A linked profile restores to connected with no QR; a script injected into a page whose
    hasSynced is already true still reports connected (the race of fast restores)."""
    sim = await SimServer(time_factor=0.05, page_weight_mib=0).start()
    sim.world.add_account(A, lid=False)
    try:
        async with rig(tmp_path, sim=sim) as r:
            await r.linked(A)
        async with rig(tmp_path, sim=sim) as r:
            await r.reports.first("state", "connected")
            assert not r.reports.of("qr") and not r.reports.of("state", "qr")
            # Late attach: a second driver on the same, already synced page.
            late = WhatsAppDriver("late", config=r.config, options=SessionOptions())
            reports = Reports()
            await r.evaluate("delete window.__wasupd")
            async with asyncio.timeout(10):
                await late.install(r.handle.page, reports.add)
                await late.inject_current_document()
            connected = await reports.first("state", "connected")
            assert connected.data["me"] == f"{A}@c.us"
            await late.detach()
    finally:
        await sim.stop()


async def test_remote_logout_reported_and_script_reinjected(tmp_path: Path) -> None:
    """A logout from the phone is reported as "logout"; the page navigates to post_logout=1
    and the script is injected again there (it reports the new QR)."""
    async with rig(tmp_path) as r:
        await r.linked(A)
        qrs = len(r.reports.of("qr"))
        await r.sim.control("logout", {"phone": A})
        logout = await r.reports.first("logout")
        assert "logged out by the phone" in logout.data["reason"]
        await r.reports.wait(lambda: len(r.reports.of("qr")) > qrs, 15, "a QR after logout")
        assert wa.LOGOUT_URL_MARKER in r.handle.page.url


async def test_dom_fallback_reports_qr_and_main_screen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a core module is missing (renamed by WhatsApp), the DOM fallback still reports the
    QR payload from data-ref and `connected` once the main screen shows (the probe checks it);
    sending says why not."""
    monkeypatch.setitem(wa.MODULES, "socket", "WAWebSocketModelRenamed")
    async with rig(tmp_path) as r:
        qr = await r.reports.first("qr")
        assert r.driver.mode == "dom"
        assert qr.data["payload"].startswith("2@") and qr.data["rotation"] == 0
        await r.sim.control("scan", {"payload": qr.data["payload"], "phone": A})
        await r.reports.first("state", "connected")
        async with asyncio.timeout(10):
            await r.driver.probe(2.0)  # the main screen is shown
            with pytest.raises(BrowserError, match="modules are not reachable"):
                await r.driver.new_message_id()


async def test_whatsapp_refusals(tmp_path: Path) -> None:
    """TOS_BLOCK is reported as failed with the state and what to do; CONFLICT as degraded."""
    sim = await SimServer(time_factor=0.05, page_weight_mib=0).start()
    sim.world.add_account(A, lid=False)
    try:
        async with rig(tmp_path, sim=sim) as r:
            await r.linked(A)
            await sim.control("fault", {"kind": "conflict", "phone": A})
            degraded = await r.reports.first("state", "degraded")
            assert "CONFLICT" in degraded.data["reason"]
            await sim.control("clear_fault", {"kind": "conflict"})
            await sim.control("fault", {"kind": "tos_block"})
        async with rig(tmp_path, sim=sim, profile="p2") as r:
            failed = await r.reports.first("failed")
            assert "TOS_BLOCK" in failed.data["reason"] and "banned" in failed.data["reason"]
    finally:
        await sim.stop()
