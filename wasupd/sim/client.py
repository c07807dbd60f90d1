"""Typed clients of the simulator's control API (docs/simulator.md), for tests and demos.

`SimClient` is async (aiohttp): `async with SimClient(url) as sim: await sim.scan(qr, A)`.
`call()` is the same API for blocking code (shell-like scripts, sync tests); the `wait_*`
actions wait on the server, so blocking callers need no polling loop.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import aiohttp

from wasupd.errors import WasupError


class SimError(WasupError):
    """The simulator refused a control request (the message says why) or is unreachable."""

    name = "SimError"


def _endpoint(base_url: str, action: str) -> str:
    return base_url.rstrip("/") + "/_sim/" + action


def _answer(status: int, data: Any, action: str) -> Any:
    if isinstance(data, dict) and "result" in data and status < 400:
        return data["result"]
    message = data.get("error") if isinstance(data, dict) else None
    raise SimError(f"{action}: {message or f'HTTP {status}'}")


def call(base_url: str, action: str, timeout: float = 60.0, **params: Any) -> Any:
    """One control action from blocking code; its result, or `SimError`."""
    req = urllib.request.Request(  # noqa: S310 - the caller's simulator URL (http on loopback)
        _endpoint(base_url, action),
        data=json.dumps(params).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return _answer(resp.status, json.loads(resp.read()), action)
    except urllib.error.HTTPError as exc:
        return _answer(exc.code, json.loads(exc.read() or b"{}"), action)
    except (urllib.error.URLError, OSError) as exc:
        raise SimError(f"simulator at {base_url} is unreachable: {exc}") from exc


class SimClient:
    """The control API over HTTP; see `wasupd.sim.control.Control` for each action."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SimClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the HTTP connection pool."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def call(self, action: str, *, wait: float = 0.0, **params: Any) -> Any:
        """POST one action; its result, or `SimError` (also when unreachable or too slow)."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        budget = aiohttp.ClientTimeout(total=self.timeout + wait)
        try:
            async with self._http.post(
                _endpoint(self.base_url, action), json=params, timeout=budget
            ) as resp:
                return _answer(resp.status, await resp.json(content_type=None), action)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise SimError(f"{action}: simulator at {self.base_url} did not answer: {exc}") from exc

    # -- the world -------------------------------------------------------------------------

    async def add_account(
        self,
        phone: str,
        *,
        name: str = "",
        platform: str = "android",
        read_receipts: bool = True,
        lid: bool = True,
    ) -> str:
        """Register a number on WhatsApp; its wid (`<digits>@c.us`). `lid=False`: an
        old-world account (not LID-migrated)."""
        return str(
            await self.call(
                "add_account",
                phone=phone,
                name=name,
                platform=platform,
                read_receipts=read_receipts,
                lid=lid,
            )
        )

    async def account(self, phone: str) -> dict[str, Any]:
        """An account by number or LID: `phone`, `wid`, `lid`, `migrated`, `hides_number`."""
        return dict(await self.call("account", phone=phone))

    async def hide_number(self, phone: str, *, hidden: bool = True) -> dict[str, Any]:
        """Others' pages stop (or start again) seeing `phone`'s number next to its LID."""
        return dict(await self.call("hide_number", phone=phone, hidden=hidden))

    async def add_group(
        self, group_id: str, members: list[str], *, name: str = "", lid_mode: bool = False
    ) -> str:
        """Create a group of registered accounts; its wid (`<id>@g.us`). `lid_mode`: LID
        addressing mode."""
        return str(
            await self.call(
                "add_group", group_id=group_id, members=members, name=name, lid_mode=lid_mode
            )
        )

    async def scan(self, qr_payload: str, phone: str) -> dict[str, Any]:
        """`phone`'s phone scans the QR payload; refuses a stale, used or unknown one."""
        return dict(await self.call("scan", payload=qr_payload, phone=phone))

    async def enter_code(self, code: str, phone: str) -> dict[str, Any]:
        """`phone`'s phone types a pairing code."""
        return dict(await self.call("enter_code", code=code, phone=phone))

    async def inject(self, to: str, from_: str, text: str) -> str:
        """A message from outside (`from_`: a number or a LID) to `to` (a number, a LID or a
        group); its id."""
        sender: dict[str, Any] = {"from": from_}  # `from` is a keyword in Python
        return str(await self.call("inject", to=to, text=text, **sender))

    async def received(self, phone: str) -> list[dict[str, Any]]:
        """Every message that reached `phone`'s phone, repeats included (`dup: true`)."""
        return list(await self.call("received", phone=phone))

    async def sent(self, phone: str) -> list[dict[str, Any]]:
        """Every message `phone`'s devices sent, with the sender's ack."""
        return list(await self.call("sent", phone=phone))

    async def logout(self, phone: str, *, event: str = "logout") -> int:
        """Remote logout of all of `phone`'s devices; how many there were."""
        return int(await self.call("logout", phone=phone, event=event))

    async def devices(self, phone: str) -> list[str]:
        """Ids of `phone`'s linked devices."""
        return list(await self.call("devices", phone=phone))

    async def conflicts(self, phone: str = "") -> list[dict[str, Any]]:
        """Every page moved to CONFLICT by another page of its device (of `phone`, or all)."""
        return list(await self.call("conflicts", phone=phone))

    # -- faults and settings ---------------------------------------------------------------

    async def fault(self, kind: str, **params: Any) -> None:
        """Start a fault (`phone=` limits it to that account's pages)."""
        await self.call("fault", kind=kind, **params)

    async def clear_fault(self, kind: str, *, phone: str = "") -> None:
        """End a fault (everywhere, or for `phone` only)."""
        await self.call("clear_fault", kind=kind, phone=phone)

    async def configure(
        self, *, auto_read: bool | None = None, page_weight_mib: int | None = None
    ) -> dict[str, Any]:
        """Automatic reading (ack 3) on/off; the JS heap new pages hold at rest."""
        params = {"auto_read": auto_read, "page_weight_mib": page_weight_mib}
        return dict(
            await self.call("configure", **{k: v for k, v in params.items() if v is not None})
        )

    async def state(self) -> dict[str, Any]:
        """Accounts, groups, open pages (with their Socket.state) and faults."""
        return dict(await self.call("state"))

    # -- waiting on the server (no polling) ------------------------------------------------

    async def wait_received(
        self, phone: str, count: int = 1, *, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Wait until `phone` received `count` messages; the list, or `SimError`."""
        return list(
            await self.call(
                "wait_received", wait=timeout, phone=phone, count=count, timeout=timeout
            )
        )

    async def wait_devices(self, phone: str, count: int = 1, *, timeout: float = 30.0) -> list[str]:
        """Wait until `phone` has exactly `count` linked devices."""
        return list(
            await self.call("wait_devices", wait=timeout, phone=phone, count=count, timeout=timeout)
        )

    async def wait_page(
        self, state: str, *, phone: str = "", timeout: float = 30.0
    ) -> dict[str, Any]:
        """Wait until a page (of `phone`, or any) reports Socket.state `state`."""
        return dict(
            await self.call("wait_page", wait=timeout, state=state, phone=phone, timeout=timeout)
        )
