"""Faults on demand, each driven with real Chromium: stall, server down/up, forced states,
renderer crash and hang, hung unload, memory balloon and page weight, slow IndexedDB flush,
logout after pairing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.sim import (
    QR_ON_SCREEN,
    SOCKET,
    browser_on,
    ev,
    goto,
    link,
    new_page,
    qr_payload,
    recorded,
    send,
    until,
)
from tests.helpers.waiting import eventually_async
from tests.sim.conftest import A, B
from wasupd.sim import SimServer

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.chromium]
WITHIN = (
    """(fn, ms) => Promise.race([fn(), new Promise((r) => setTimeout(() => r('no answer'), ms))])"""
)
EXISTS = "() => window.require('WAWebQueryExistsJob').queryWidExists('{phone}@c.us').then((r) => r && 'answered')"
OPEN_CHAT = (
    "(to) => window.require('WAWebFindChatAction').findOrCreateLatestChat(to).then(() => true)"
)


async def heap_mib(page: Any) -> float:
    """Live JS heap of the page after a full GC, in MiB."""
    cdp = await page.target.createCDPSession()
    async with asyncio.timeout(20):
        await cdp.send("HeapProfiler.collectGarbage")
        usage = await cdp.send("Runtime.getHeapUsage")
        await cdp.detach()
    return float(usage["usedSize"]) / (1 << 20)


async def until_heap(page: Any, ok: Callable[[float], bool], timeout: float = 30.0) -> float:
    """Sample the heap until `ok(MiB)` holds (the fault message reaches the page asynchronously)."""
    return float(
        await eventually_async(
            lambda: heap_mib(page), timeout, "the heap measure to change", ok=ok, interval=0.2
        )
    )


async def test_stall_keeps_connected_but_nothing_flows(
    sim: SimServer, page: Any, tmp_path: Path
) -> None:
    """Stalled: Socket.state stays CONNECTED, sends never complete, existence queries never
    answer, inbound messages do not arrive; after a restart the pending send goes out once."""
    profile = tmp_path / "a"
    async with browser_on(profile) as browser:
        stalled = await new_page(browser, incognito=False)
        await link(sim, stalled, A)
        assert await ev(stalled, OPEN_CHAT, f"{B}@c.us")  # finding the chat needs the server
        await sim.control("fault", {"kind": "stall", "phone": A})
        sent = await send(stalled, f"{B}@c.us", "into the void")
        await sim.control("inject", {"to": A, "from": B, "text": "unheard"})
        probe = f"() => ({WITHIN})({EXISTS.format(phone=B)}, {1500})"
        assert await ev(stalled, probe) == "no answer"  # the bounded window of a negative check
        assert await ev(stalled, f"() => {SOCKET}.state") == "CONNECTED"
        assert (
            await ev(stalled, f"() => window.__results && window.__results[{sent['id']!r}]") is None
        )
        assert [v["body"] for v in await recorded(stalled, "add") if not v["id"]["fromMe"]] == []
        assert await sim.control("received", {"phone": B}) == []
    await sim.control("clear_fault", {"kind": "stall"})
    async with browser_on(profile) as browser:
        again = await new_page(browser, incognito=False)
        await goto(again, sim.url)
        await until(again, f"{SOCKET}.hasSynced")
        received = await sim.control("wait_received", {"phone": B, "count": 1, "timeout": 15})
        assert [(m["id"], m["body"]) for m in received] == [(sent["id"], "into the void")]
        await until(
            again,
            "window.__rec.some(([k, v]) => k === 'add' && v.body === 'unheard' && v.isNewMsg)",
        )


async def test_server_down_times_out_then_reconnects_and_catches_up(
    sim: SimServer, page: Any
) -> None:
    """Server down: TIMEOUT and sends stay pending; server up: CONNECTED again, the pending send
    is delivered once and a message that arrived meanwhile comes in as new."""
    await link(sim, page, A)
    assert await ev(page, OPEN_CHAT, f"{B}@c.us")
    await sim.control("fault", {"kind": "server_down"})
    await until(page, f"{SOCKET}.state === 'TIMEOUT'")
    sent = await send(page, f"{B}@c.us", "while down")
    await sim.control("inject", {"to": A, "from": B, "text": "meanwhile"})
    await sim.control("fault", {"kind": "server_up"})
    await until(page, f"{SOCKET}.state === 'CONNECTED'", 20)
    await until(page, f"window.__results && window.__results[{sent['id']!r}] === 'OK'")
    await until(
        page, "window.__rec.some(([k, v]) => k === 'add' && v.body === 'meanwhile' && v.isNewMsg)"
    )
    assert [m["body"] for m in await sim.control("received", {"phone": B})] == ["while down"]


@pytest.mark.parametrize("kind", ["conflict", "timeout", "tos_block", "deprecated_version"])
async def test_forced_states_and_their_way_out(sim: SimServer, page: Any, kind: str) -> None:
    """The state reaches the linked page as Socket.state and nothing flows meanwhile; CONFLICT
    ends with takeover(), the others when the fault is cleared (the page reconnects); then the
    message that arrived meanwhile comes in as new."""
    state = kind.upper()
    await link(sim, page, A)
    await sim.control("fault", {"kind": kind, "phone": A})
    await until(page, f"{SOCKET}.state === {state!r}")
    assert await ev(page, "() => document.querySelector('.state-banner').dataset.state") == state
    await sim.control("inject", {"to": A, "from": B, "text": f"during {kind}"})
    if kind == "conflict":
        await ev(page, f"() => {SOCKET}.takeover()")
    else:
        await sim.control("clear_fault", {"kind": kind})
    await until(page, f"{SOCKET}.state === 'CONNECTED'", 20)
    await until(
        page,
        f"window.__rec.some(([k, v]) => k === 'add' && v.body === 'during {kind}' && v.isNewMsg)",
    )
    events = [(k, v) for k, v, _ in await ev(page, "() => window.__rec") if k in ("state", "add")]
    back = max(i for i, e in enumerate(events) if e == ("state", "CONNECTED"))
    assert [i for i, (k, _) in enumerate(events) if k == "add"] == [back + 1]  # only after recovery


async def test_a_state_for_everyone_replaces_the_qr(sim: SimServer, page: Any) -> None:
    """A fault without a phone covers unlinked pages too: TOS_BLOCK instead of a QR."""
    await sim.control("fault", {"kind": "tos_block"})
    await goto(page, sim.url)
    await until(page, f"{SOCKET}.state === 'TOS_BLOCK'")
    assert "UNPAIRED" not in await recorded(page, "state")
    await sim.control("clear_fault", {"kind": "tos_block"})
    await until(page, QR_ON_SCREEN, 20)


async def test_crash_is_a_real_renderer_crash(sim: SimServer, tmp_path: Path) -> None:
    """`crash` makes V8 run out of heap: Chromium reports the renderer crashed ("Page crashed!")."""
    async with browser_on(tmp_path / "c") as browser:
        page = await new_page(browser, incognito=False)
        crashed = asyncio.get_running_loop().create_future()
        page.on("error", lambda err: crashed.done() or crashed.set_result(str(err)))
        await link(sim, page, A)
        await sim.control("fault", {"kind": "crash", "phone": A})
        async with asyncio.timeout(90):
            assert "crashed" in await crashed


async def test_hang_stops_the_renderer_answering(sim: SimServer, tmp_path: Path) -> None:
    """`hang` spins the renderer: DevTools calls into the page stop answering, Browser.close works."""
    async with browser_on(tmp_path / "h") as browser:
        page = await new_page(browser, incognito=False)
        await link(sim, page, A)
        await sim.control("fault", {"kind": "hang"})
        with pytest.raises(TimeoutError):
            await ev(
                page,
                "() => new Promise((r) => setTimeout(() => r(1), 50)).then(() => 1)",
                timeout=3,
            )


async def test_hang_close_blocks_unload(sim: SimServer, tmp_path: Path) -> None:
    """`hang_close`: the page blocks its unload, so a navigation (a reload, WhatsApp's own logout
    navigation) hangs and the page stops answering; headless Browser.close still ends it."""
    async with browser_on(tmp_path / "u") as browser:
        page = await new_page(browser, incognito=False)
        await goto(page, sim.url)
        await qr_payload(page)
        await sim.control("fault", {"kind": "hang_close"})
        await until(page, "document.querySelector('div[data-ref]')")
        assert await ev(page, "() => { setTimeout(() => location.reload(), 0); return true; }")
        with pytest.raises(TimeoutError):
            await ev(page, "() => document.readyState", timeout=4)


async def test_memory_balloon_and_page_weight_are_live_js_heap(browser: Any) -> None:
    """The page weight knob holds that much JS heap at rest; `memory` adds N MiB until cleared."""
    async with SimServer(time_factor=0.05, page_weight_mib=32) as sim:
        page = await new_page(browser)
        try:
            await goto(page, sim.url)
            await qr_payload(page)
            rest = await heap_mib(page)
            assert 32 <= rest < 48
            await sim.control("fault", {"kind": "memory", "mib": 100})
            await until_heap(page, lambda mib: mib >= rest + 95)
            await sim.control("clear_fault", {"kind": "memory"})
            await until_heap(page, lambda mib: mib < rest + 10)
        finally:
            async with asyncio.timeout(10):
                await page.target.browserContext.close()


async def test_slow_idb_loses_a_fresh_link_when_killed_before_the_flush(
    sim: SimServer, tmp_path: Path
) -> None:
    """With IndexedDB writes delayed, a browser killed right after linking has not stored the
    credentials: the next start shows a QR (the "QR again after restart" complaint,
    docs/whatsapp-web.md §8 item 7)."""
    profile = tmp_path / "s"
    await sim.control("fault", {"kind": "slow_idb", "seconds": 600})
    async with browser_on(profile) as browser:
        await link(sim, await new_page(browser, incognito=False), A)
    await sim.control("clear_fault", {"kind": "slow_idb"})
    async with browser_on(profile) as browser:
        page = await new_page(browser, incognito=False)
        await goto(page, sim.url)
        await until(page, QR_ON_SCREEN)


async def test_logout_after_pairing(sim: SimServer, page: Any) -> None:
    """`logout_after` logs the device out N (simulated) seconds after pairing."""
    await sim.control("fault", {"kind": "logout_after", "phone": A, "seconds": 20})
    await link(sim, page, A)
    await until(page, f"location.search === '?post_logout=1' && {QR_ON_SCREEN}", 20)
    assert await sim.control("devices", {"phone": A}) == []


async def test_fast_sync_reproduces_the_has_synced_race(page: Any) -> None:
    """`fast_sync`: hasSynced follows CONNECTED at once (the race of docs/whatsapp-web.md §2b),
    where the normal sync takes 5 s (1 s at this time factor)."""
    async with SimServer(time_factor=0.2) as sim:
        await sim.control("add_account", {"phone": A})
        await sim.control("fault", {"kind": "fast_sync"})
        await link(sim, page, A)
        at = {(k, v): ms for k, v, ms in await ev(page, "() => window.__rec")}
        assert at[("hasSynced", True)] - at[("state", "CONNECTED")] < 400


async def test_unknown_fault_is_refused(sim: SimServer) -> None:
    """An unknown fault kind is refused with the list of known ones."""
    with pytest.raises(ValueError, match="known: stall"):
        await sim.control("fault", {"kind": "meteor"})
    assert await sim.control("fault", {"kind": "qr_never_scanned"}) is True


async def test_growth_adds_heap_over_time_and_drops_its_cache_on_memory_pressure(
    browser: Any,
) -> None:
    """`growth` adds heap at its rate; a `memorypressure` event drops the reclaimable share
    (half here) and leaves the leak; clearing the fault frees both."""
    # 0.05: a simulated hour is 180 s, so 3600 MiB per hour is 20 MiB per real second.
    async with SimServer(time_factor=0.05, page_weight_mib=32) as sim:
        page = await new_page(browser)
        try:
            await goto(page, sim.url)
            await qr_payload(page)
            rest = await heap_mib(page)
            await sim.control("fault", {"kind": "growth", "mib_per_hour": 3600, "reclaimable": 0.5})
            grown = await until_heap(page, lambda mib: mib >= rest + 100)
            await sim.control("clear_fault", {"kind": "growth"})  # growth stops, both shares go
            await until_heap(page, lambda mib: mib < rest + 10)
            await sim.control("fault", {"kind": "growth", "mib_per_hour": 3600, "reclaimable": 0.5})
            grown = await until_heap(page, lambda mib: mib >= rest + 100)
            await ev(page, "() => { window.dispatchEvent(new CustomEvent('memorypressure')); }")
            after = await heap_mib(page)
            # Half of what had grown is gone (the heap keeps growing meanwhile: a margin).
            assert after < rest + (grown - rest) * 0.5 + 25
            assert after > rest + (grown - rest) * 0.5 - 25
        finally:
            await sim.control("clear_fault", {"kind": "growth"})
            async with asyncio.timeout(10):
                await page.target.browserContext.close()


async def test_growth_keeps_its_rate_per_simulated_hour_under_a_tiny_time_factor(
    browser: Any,
) -> None:
    """A time factor changed on an open page (configure) reaches it, and below 0.01, where the
    page's 20 ms timer floor is coarser than 2 simulated seconds, growth still adds its rate per
    simulated hour (it used to add 2 simulated seconds' worth per 20 ms, a fifth of it here)."""
    async with SimServer(time_factor=0.05, page_weight_mib=16) as sim:
        page = await new_page(browser)
        try:
            await goto(page, sim.url)
            await qr_payload(page)
            rest = await heap_mib(page)
            assert (await sim.control("configure", {"time_factor": 0.002}))["time_factor"] == 0.002
            # A simulated hour is now 7.2 real s: 360 MiB per hour is 50 MiB per real second.
            t0 = time.monotonic()
            await sim.control("fault", {"kind": "growth", "mib_per_hour": 360, "reclaimable": 0})
            await until_heap(page, lambda mib: mib >= rest + 100, timeout=30)
            took = time.monotonic() - t0
            assert 1.0 < took < 6.0, f"+100 MiB took {took:.1f} s, expected about 2 s"
        finally:
            await sim.control("clear_fault", {"kind": "growth"})
            async with asyncio.timeout(10):
                await page.target.browserContext.close()


async def test_growth_splits_small_steps_into_both_shares(browser: Any) -> None:
    """With 1 MiB per step and a quarter unreclaimable, a quarter of the growth is a leak a
    memory pressure event leaves (rounding each step's MiB into shares gave all of it to the
    cache: a soak saw its pages never leak)."""
    # 0.05: a step is 0.1 real s; 1800 MiB per simulated hour is 1 MiB per step.
    async with SimServer(time_factor=0.05, page_weight_mib=16) as sim:
        page = await new_page(browser)
        try:
            await goto(page, sim.url)
            await qr_payload(page)
            rest = await heap_mib(page)
            await sim.control(
                "fault", {"kind": "growth", "mib_per_hour": 1800, "reclaimable": 0.75}
            )
            grown = await until_heap(page, lambda mib: mib >= rest + 100)
            await ev(page, "() => { window.dispatchEvent(new CustomEvent('memorypressure')); }")
            left = await heap_mib(page) - rest
            # A quarter of what had grown stays (the heap keeps growing meanwhile: a margin).
            assert (grown - rest) * 0.25 - 10 < left < (grown - rest) * 0.25 + 25
        finally:
            await sim.control("clear_fault", {"kind": "growth"})
            async with asyncio.timeout(10):
                await page.target.browserContext.close()


async def test_time_factor_must_be_positive(sim: SimServer) -> None:
    """configure refuses a time factor that is not a positive number, saying what is expected."""
    with pytest.raises(ValueError, match=r"time_factor must be a number > 0 .* got 0"):
        await sim.control("configure", {"time_factor": 0})
    with pytest.raises(ValueError, match="got 'fast'"):
        await sim.control("configure", {"time_factor": "fast"})
    assert (await sim.control("state", {}))["time_factor"] == sim.core.t.factor


async def test_growth_parameters_are_checked(sim: SimServer) -> None:
    """A growth rate that is not positive or a share outside 0..1 is refused saying so."""
    with pytest.raises(ValueError, match="mib_per_hour must be positive"):
        await sim.control("fault", {"kind": "growth", "mib_per_hour": 0})
    with pytest.raises(ValueError, match="reclaimable share, from 0 to 1, got 1.5"):
        await sim.control("fault", {"kind": "growth", "reclaimable": 1.5})
    with pytest.raises(ValueError, match="mib_per_hour must be a number, got 'fast'"):
        await sim.control("fault", {"kind": "growth", "mib_per_hour": "fast"})
