"""The control API: what tests, demos and scripts do to the simulated world (docs/simulator.md).

Every action takes keyword parameters and returns JSON-able data; a refusal is a ValueError
whose message says what to do. `SimServer.control(action, params)` calls them in-process and
`POST /_sim/<action>` over HTTP.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from wasupd.sim import growth
from wasupd.sim.core import Core
from wasupd.sim.faults import EVERYONE, PAGE_FAULTS, STATE_FAULTS, check_kind
from wasupd.sim.linking import Linking
from wasupd.sim.messaging import Messaging
from wasupd.sim.model import normalize_phone
from wasupd.sim.timing import Timings, check_factor

Action = Callable[..., Awaitable[Any]]


class UnknownAction(LookupError):
    """No control action has that name."""


MAX_WAIT_S = 300.0


class Control:
    """The actions of the control API, by name."""

    def __init__(self, core: Core, linking: Linking, messaging: Messaging) -> None:
        self.core, self.linking, self.messaging = core, linking, messaging
        self.actions: dict[str, Action] = {
            name: getattr(self, name)
            for name in (
                "add_account", "account", "hide_number", "add_group", "scan", "enter_code", "inject", "received", "sent",
                "devices", "conflicts", "logout", "fault", "clear_fault", "state", "configure",
                "wait_received", "wait_devices", "wait_page",
            )
        }  # fmt: skip

    async def call(self, action: str, params: dict[str, Any]) -> Any:
        """Run `action`; UnknownAction for an unknown one, ValueError for bad parameters."""
        fn = self.actions.get(action)
        if fn is None:
            raise UnknownAction(
                f"unknown action {action!r}; known: {', '.join(sorted(self.actions))}"
            )
        try:
            inspect.signature(fn).bind(**params)
        except TypeError as exc:  # a missing or unexpected parameter
            raise ValueError(f"{action}: {exc}") from None
        return await fn(**params)

    # -- the world -------------------------------------------------------------------------

    async def add_account(
        self,
        phone: str,
        name: str = "",
        platform: str = "android",
        read_receipts: bool = True,
        lid: bool = True,
    ) -> str:
        """Register a number on WhatsApp; its wid. Other numbers are "not on WhatsApp".
        `lid=false`: not LID-migrated (its pages see numbers only, as before LIDs)."""
        if not isinstance(lid, bool):
            raise ValueError("add_account: lid must be true (LID-migrated) or false (old world)")
        acc = self.core.world.add_account(
            phone, name, platform, read_receipts=read_receipts, lid=lid
        )
        self.core.changed()
        return acc.wid

    async def account(self, phone: str) -> dict[str, Any]:
        """An account by number or LID: its wid, LID, and whether it is migrated or hides
        its number."""
        acc = self.core.world.sender(phone)
        return {
            "phone": acc.phone,
            "wid": acc.wid,
            "lid": acc.lid,
            "migrated": acc.migrated,
            "hides_number": acc.hides_number,
        }

    async def hide_number(self, phone: str, hidden: bool = True) -> dict[str, Any]:
        """`phone` hides its number (or shows it again): other pages see only its LID."""
        acc = self.core.world.sender(phone)
        acc.hides_number = bool(hidden)
        return await self.account(acc.phone)

    async def add_group(
        self, group_id: str, members: list[str], name: str = "", lid_mode: bool = False
    ) -> str:
        """Create a group `<id>@g.us` of registered accounts; its wid. `lid_mode`: LID
        addressing (members and authors by LID on migrated pages)."""
        world = self.core.world
        group = world.add_group(group_id, list(members), name, lid_mode=bool(lid_mode))
        for phone in group.members:  # members' open pages learn about the new chat
            acc = world.accounts[phone]
            for conn in self.core.live_pages(acc):
                await conn.send("chat", **self.messaging.group_chat(group, acc))
        return group.wid

    async def scan(self, payload: str, phone: str) -> dict[str, Any]:
        """The phone of `phone` scans a QR payload (as read from the page's canvas)."""
        return await self.linking.scan(payload, phone)

    async def enter_code(self, code: str, phone: str) -> dict[str, Any]:
        """The phone of `phone` types a pairing code."""
        return await self.linking.enter_code(code, phone)

    async def inject(
        self, to: str, text: str = "", media: dict[str, Any] | None = None, **sender: str
    ) -> str:
        """A message from outside (`from`: a number or a LID) to `to` (a number, a LID or a
        group); its message id. `media`: a file from the phone, `{data: base64, kind:
        image|video|audio|ptt|document|sticker, mimetype, filename}`, `text` its caption."""
        if not text and media is None:
            raise ValueError("inject needs text, or media (a file) with an optional caption")
        who = sender.get("from", sender.get("from_", ""))
        return await self.messaging.inject(to, who, text, media)

    async def received(self, phone: str) -> list[dict[str, Any]]:
        """Every message that reached `phone`'s phone, in order, repeats included."""
        acc = self.core.world.account(phone)
        return [m.for_recipient(acc.phone) for m in acc.received]

    async def sent(self, phone: str) -> list[dict[str, Any]]:
        """Every message `phone`'s devices sent, with the sender's ack."""
        return [m.for_sender() for m in self.core.world.account(phone).sent]

    async def devices(self, phone: str) -> list[str]:
        """Ids of `phone`'s linked devices."""
        return list(self.core.world.account(phone).devices)

    async def conflicts(self, phone: str = "") -> list[dict[str, Any]]:
        """Every time a page went to CONFLICT because another page presented its device's
        credentials (of `phone`, or of every account), in order: `page` (the one replaced),
        `by` (the one that became active), `how` (connect or takeover), `device`, `at`."""
        return self.core.conflicts.of(normalize_phone(phone) if phone else "")

    async def logout(self, phone: str, event: str = "logout") -> int:
        """Remote logout of every device of `phone`; how many were linked."""
        return await self.linking.remote_logout(phone, event)

    # -- faults ----------------------------------------------------------------------------

    async def fault(self, kind: str, phone: str = "", **params: Any) -> bool:
        """Start a fault for `phone`'s pages, or for every page when no phone is given."""
        scope = normalize_phone(phone) if phone else EVERYONE
        if kind == "growth":
            params = growth.params(params)  # a bad rate or share is refused here, not in the page
        self.core.faults.set(check_kind(kind), scope, params)
        if kind == "server_down":
            await self.core.drop(list(self.core.pages), 1011, "simulated server down")
        elif kind in STATE_FAULTS:
            for conn in self.core.scoped_pages(scope):
                if not self.core.faults.stalled(conn):
                    await self.linking.forced_state(conn)
        elif kind in PAGE_FAULTS:
            for conn in self.core.scoped_pages(scope):
                await conn.send("fault", kind=kind, params=params)
        self.core.changed()
        return True

    async def clear_fault(self, kind: str, phone: str = "") -> bool:
        """End a fault (for `phone` only, or everywhere); forced states reconnect the page."""
        check_kind(kind)
        scope = normalize_phone(phone) if phone else None
        self.core.faults.clear(kind, scope)
        pages = [p for p in self.core.pages if scope is None or p.phone == scope]
        if kind in STATE_FAULTS:  # the page reconnects and gets its normal state
            stuck = [p for p in pages if p.state == STATE_FAULTS[kind]]
            await self.core.drop(stuck, 1012, "state cleared")
        elif kind in PAGE_FAULTS:
            for conn in pages:
                await conn.send("clear_fault", kind=kind)
        self.core.changed()
        return True

    # -- inspection and waiting ------------------------------------------------------------

    async def state(self) -> dict[str, Any]:
        """Accounts, groups, open pages and active faults."""
        world = self.core.world
        return {
            "time_factor": self.core.t.factor,
            "accounts": {
                p: {"devices": len(a.devices), "lid": a.lid, "migrated": a.migrated}
                for p, a in world.accounts.items()
            },
            "groups": {g.wid: g.members for g in world.groups.values()},
            "pages": sorted((p.summary() for p in self.core.pages), key=lambda s: s["page"]),
            "faults": self.core.faults.summary(),
            "conflicts": len(self.core.conflicts.seen),
            "auto_read": self.core.auto_read,
            "page_weight_mib": self.core.page_weight_mib,
        }

    async def configure(
        self,
        auto_read: bool | None = None,
        page_weight_mib: int | None = None,
        time_factor: float | None = None,
    ) -> dict[str, Any]:
        """Change read receipts (auto read after a delay), the page weight of new pages, or
        the time factor: from now on for the server's timelines and for pages that load;
        open pages are told (a growth fault already running keeps its pace until set again)."""
        if time_factor is not None:
            self.core.t = Timings(check_factor(time_factor))
            for conn in list(self.core.pages):
                await conn.send("timing", config=self.core.t.page_config())
        if auto_read is not None:
            self.core.auto_read = bool(auto_read)
        if page_weight_mib is not None:
            if int(page_weight_mib) < 0:
                raise ValueError("page_weight_mib must be >= 0")
            self.core.page_weight_mib = int(page_weight_mib)
        return {
            "auto_read": self.core.auto_read,
            "page_weight_mib": self.core.page_weight_mib,
            "time_factor": self.core.t.factor,
        }

    async def wait_received(
        self, phone: str, count: int = 1, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Wait until `phone` received at least `count` messages; the list, or ValueError."""
        acc = self.core.world.account(phone)
        if not await self.core.wait_for(lambda: len(acc.received) >= count, _bound(timeout)):
            raise ValueError(f"{phone} received {len(acc.received)} of {count} within {timeout} s")
        return await self.received(phone)

    async def wait_devices(self, phone: str, count: int = 1, timeout: float = 30.0) -> list[str]:
        """Wait until `phone` has exactly `count` linked devices; their ids, or ValueError."""
        acc = self.core.world.account(phone)
        if not await self.core.wait_for(lambda: len(acc.devices) == count, _bound(timeout)):
            raise ValueError(
                f"{phone} has {len(acc.devices)} devices, not {count}, after {timeout} s"
            )
        return list(acc.devices)

    async def wait_page(self, state: str, phone: str = "", timeout: float = 30.0) -> dict[str, Any]:
        """Wait until a page (of `phone`, or any) reports Socket.state `state`; its summary."""

        def match() -> dict[str, Any] | None:
            for p in sorted(self.core.pages, key=lambda p: p.page_id):
                if p.state == state and (not phone or p.phone == normalize_phone(phone)):
                    return p.summary()
            return None

        if not await self.core.wait_for(lambda: match() is not None, _bound(timeout)):
            raise ValueError(
                f"no page {'of ' + phone + ' ' if phone else ''}reached {state} in {timeout} s"
            )
        found = match()
        assert found is not None
        return found


def _bound(timeout: float) -> float:
    """A caller's timeout, bounded so a control request cannot hang forever."""
    return max(0.0, min(float(timeout), MAX_WAIT_S))
