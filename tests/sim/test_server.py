"""The control API over real HTTP with the typed clients, and `python -m wasupd.sim`."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
import pytest

from tests.sim.conftest import A, B, C
from wasupd.sim import SimClient, SimError, SimServer
from wasupd.sim.client import call

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_client_drives_the_world_over_http(sim: SimServer) -> None:
    """Accounts, groups, injected messages, the received/sent judges, waiting on the server,
    faults and state, all through SimClient over HTTP."""
    async with SimClient(sim.url) as client:
        assert await client.add_account("+1 555 000 4444", name="Dan") == "15550004444@c.us"
        group = await client.add_group("120363000000000001", [A, B, C], name="Ops")
        assert group == "120363000000000001@g.us"
        one = await client.inject(B, A, "direct")
        two = await client.inject(group, A, "to the group")
        got = await client.wait_received(B, 2, timeout=5)
        assert [(m["id"], m["chat"], m["from"]) for m in got] == [
            (one, f"{A}@c.us", f"{A}@c.us"),
            (two, group, f"{A}@c.us"),
        ]
        assert [m["body"] for m in await client.sent(A)] == ["direct", "to the group"]
        assert await client.received(A) == []
        await client.fault("stall", phone=B)
        await client.fault("memory", mib=10)
        state = await client.state()
        assert state["faults"]["stall"] == [B] and "memory:*" in state["faults"]["page"]
        await client.clear_fault("stall")
        assert (await client.state())["faults"]["stall"] == []
        assert await client.configure(auto_read=False) == {
            "auto_read": False,
            "page_weight_mib": 64,
            "time_factor": 0.05,
        }
        assert await client.devices(A) == []


async def test_refusals_say_what_to_do(sim: SimServer) -> None:
    """Bad requests get 400/404 with a message; the client raises SimError carrying it."""
    async with SimClient(sim.url, timeout=10) as client:
        with pytest.raises(SimError, match="not a simulated account: add_account it first"):
            await client.received("15559990000")
        with pytest.raises(SimError, match="not a phone number"):
            await client.add_account("hello")
        with pytest.raises(SimError, match="unknown action 'frobnicate'"):
            await client.call("frobnicate")
        with pytest.raises(SimError, match="missing a required argument: 'phone'"):
            await client.call("devices")
        with pytest.raises(SimError, match="received 0 of 1 within 0.2 s"):
            await client.wait_received(A, 1, timeout=0.2)
    async with aiohttp.ClientSession() as http, asyncio.timeout(10):
        async with http.post(sim.url + "_sim/scan", data=b"{not json") as resp:
            assert resp.status == 400 and "not JSON" in (await resp.json())["error"]
        async with http.get(sim.url + "_sim/nothing") as resp:
            assert resp.status == 404


async def test_module_entry_point_serves_until_signalled() -> None:
    """`python -m wasupd.sim` prints its URL on one line, serves the page and the control API
    (also to blocking code), and exits 0 on SIGTERM and on SIGINT."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wasupd.sim", "--port", "0", "--time-factor", "0.05",
            "--accounts", f"{A},{B}", stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with asyncio.timeout(20):
                url = (await proc.stdout.readline()).decode().strip()  # type: ignore[union-attr]
            assert url.startswith("http://127.0.0.1:") and url.endswith("/")
            state = await asyncio.to_thread(call, url, "state")
            assert sorted(state["accounts"]) == [A, B]
            async with aiohttp.ClientSession() as http, asyncio.timeout(10):
                async with http.get(url) as resp:
                    assert resp.status == 200 and '<div id="app">' in await resp.text()
            proc.send_signal(sig)
            async with asyncio.timeout(15):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_bad_arguments_exit_2() -> None:
    """An invalid account number is a usage error (exit 2) with a message on stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wasupd.sim", "--accounts", "nope", stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(20):
        _, err = await proc.communicate()
    assert proc.returncode == 2 and b"not a phone number" in err
