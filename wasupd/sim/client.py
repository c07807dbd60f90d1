"""A small typed client of the simulator's control API (used by tests and `make demo`)."""

from __future__ import annotations

from typing import Any

import aiohttp


class SimError(Exception):
    """The simulator refused a control request."""


class SimClient:
    """`async with SimClient(url) as sim: await sim.scan(payload, phone=...)`."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/") + "/_sim/"
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SimClient:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def call(self, action: str, **params: Any) -> Any:
        """POST one control action; its result, or `SimError`."""
        assert self._http is not None, "use `async with SimClient(...)`"
        async with self._http.post(self.base + action, json=params) as resp:
            data = await resp.json()
        if "error" in data:
            raise SimError(data["error"])
        return data["result"]

    async def add_account(self, phone: str, *, name: str = "") -> str:
        """Register a number; its wid."""
        return str(await self.call("add_account", phone=phone, name=name))

    async def add_group(self, group_id: str, members: list[str]) -> None:
        """Create a group `<id>@g.us` with member phone numbers."""
        await self.call("add_group", group_id=group_id, members=members)

    async def scan(self, payload: str, *, phone: str) -> None:
        """The phone of `phone` scans a QR payload."""
        await self.call("scan", payload=payload, phone=phone)

    async def enter_code(self, code: str, *, phone: str) -> None:
        """The phone of `phone` types a pairing code."""
        await self.call("enter_code", code=code, phone=phone)

    async def inject(self, *, to: str, from_: str, text: str) -> str:
        """A message from outside to account `to`; its id."""
        return str(await self.call("inject", to=to, **{"from": from_}, text=text))

    async def received(self, phone: str) -> list[dict[str, Any]]:
        """Every message delivered to `phone` (duplicates included)."""
        return list(await self.call("received", phone=phone))

    async def sent(self, phone: str) -> list[dict[str, Any]]:
        """Every message `phone`'s devices sent."""
        return list(await self.call("sent", phone=phone))

    async def logout(self, phone: str) -> None:
        """Remote logout of every linked device of `phone`."""
        await self.call("logout", phone=phone)

    async def fault(self, kind: str, **params: Any) -> None:
        """Inject a fault (see docs/simulator.md)."""
        await self.call("fault", kind=kind, **params)

    async def clear_fault(self, kind: str) -> None:
        """Clear a fault."""
        await self.call("clear_fault", kind=kind)

    async def devices(self, phone: str) -> list[str]:
        """Linked device ids of `phone`."""
        return list(await self.call("devices", phone=phone))
