"""`session.*` methods: lifecycle of sessions."""

from __future__ import annotations

import asyncio
from typing import Any

from wasupd.addressing import normalize_phone
from wasupd.admin import ProfilesAdmin
from wasupd.errors import InvalidArgument, InvalidState
from wasupd.rpc.server import Context
from wasupd.sessions import SessionManager
from wasupd.store.sessions import SessionRepo
from wasupd.supervision.states import SessionState

_OPTION_KEYS = {
    "proxy",
    "user_agent",
    "build",
    "extra_args",
    "memory_mib",
    "memory_soft_mib",
    "fds",
    "processes",
    "allow_auto",
}


class SessionMethods:
    """Create, inspect, start, stop, restart, log out and delete sessions."""

    def __init__(
        self, *, sessions: SessionManager, repo: SessionRepo, admin: ProfilesAdmin
    ) -> None:
        self.sessions, self.repo, self.admin = sessions, repo, admin

    async def _get(self, name: str) -> dict[str, Any]:
        self.sessions.runner(name)  # SessionNotFound for unknown names
        return self.sessions.describe(self.sessions.records[name])

    async def create(
        self,
        ctx: Context,
        name: str,
        phone: str | None = None,
        start: bool = True,
        options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a session and (unless `start` is false) start it.

        `options` overrides per session: proxy, user_agent, build ('full' | 'headless-shell'),
        extra_args, memory_mib, memory_soft_mib, fds, processes.
        """
        opts = dict(options or {})
        unknown = sorted(set(opts) - _OPTION_KEYS)
        if unknown:
            raise InvalidArgument(
                f"unknown session option {unknown[0]!r} (known: {', '.join(sorted(_OPTION_KEYS))})"
            )
        if opts.get("build") not in (None, "full", "headless-shell"):
            raise InvalidArgument("option build must be 'full' or 'headless-shell'")
        soft = opts.get("memory_soft_mib", 0)
        if not isinstance(soft, int) or isinstance(soft, bool) or soft < 0:
            raise InvalidArgument(
                f"option memory_soft_mib must be a whole number of MiB, got {soft!r}"
                " (0: 80% of memory_mib)"
            )
        await self.sessions.create(name, phone=phone, options=opts, start=start)
        return await self._get(name)

    def list(self, ctx: Context) -> list[dict[str, Any]]:
        """Every session with its state, pid, resource use and restart count."""
        return self.sessions.described()

    async def get(self, ctx: Context, name: str, history: int = 20) -> dict[str, Any]:
        """One session, with its latest `history` state transitions."""
        out = await self._get(name)
        entries = await self.repo.history(name, max(0, min(history, 1000)))
        out["history"] = [
            {"at": e.at, "from": e.from_state, "to": e.to_state, "reason": e.reason}
            for e in entries
        ]
        return out

    async def start(self, ctx: Context, name: str) -> dict[str, Any]:
        """Start a stopped, failed or logged-out session (refused past max_sessions)."""
        await self.sessions.start(name)
        return await self._get(name)

    async def stop(self, ctx: Context, name: str) -> dict[str, Any]:
        """Stop a session; returns once its browser tree is gone (in a fleet, on any host:
        once the session's host stopped it)."""
        await self.sessions.stop(name)
        return await self._get(name)

    async def restart(self, ctx: Context, name: str) -> dict[str, Any]:
        """Stop the browser and start it again. In a fleet, on any host: the session's host
        does it (taken up at its next lease round)."""
        await self.sessions.restart(name)
        return await self._get(name)

    async def logout(self, ctx: Context, name: str) -> dict[str, Any]:
        """Unlink this device from the phone; the profile is wiped after the browser exits.
        In a fleet, on any host: the session's host does it."""
        await self.sessions.logout(name)
        return await self._get(name)

    async def delete(self, ctx: Context, name: str, force: bool = False) -> dict[str, Any]:
        """Delete a session and its profile archive (a running one only with `force`). In a
        fleet, on any host: the session's host does it when one runs it."""
        await self.sessions.delete(name, force=force)
        return {"deleted": name}

    async def qr(self, ctx: Context, name: str, wait: float = 0.0) -> dict[str, Any]:
        """The current login QR: payload, expiry (unix time) and rotation count.

        With `wait` > 0, waits up to that many seconds for a QR to be on offer. In a fleet,
        on any host: the QR the session's host offers.
        """
        runner = self.sessions.runner(name)
        if runner.qr is None or runner.state is not SessionState.QR:
            wait = min(max(wait, 0.0), 300.0)
            loop = asyncio.get_running_loop()
            started = loop.time()
            if wait > 0:
                await self.sessions.until_placed(name, wait)  # a fleet: claimed a moment later
            # In a fleet the session may run on another host: the QR it stored.
            remote = await self.sessions.qr_elsewhere(name, wait - (loop.time() - started))
            if remote is not None:
                return remote
            if wait > 0:
                await runner.wait_qr(timeout=max(0.0, wait - (loop.time() - started)))
            if runner.qr is None or runner.state is not SessionState.QR:
                raise InvalidState(
                    f"session {name!r} is {runner.state.value}: no QR is on offer"
                    + (" (already linked)" if runner.state is SessionState.CONNECTED else ""),
                    session=name,
                    state=runner.state.value,
                )
        return {"session": name, "state": runner.state.value, **runner.qr}

    async def pair(
        self, ctx: Context, name: str, phone: str, notify: bool = True
    ) -> dict[str, Any]:
        """Link by pairing code instead of QR: returns the 8-character code to type on the phone."""
        runner = self.sessions.runner(name)
        number = normalize_phone(phone)
        host = self.sessions.runs_elsewhere(name)
        if host:  # the code comes from the page: only the session's host can ask for one
            raise InvalidState(
                f"session {name!r} runs on host {host}: ask for its pairing code there"
                f" (wasupctl on {host}), or scan its QR (`wasupctl qr {name}` works anywhere)",
                session=name,
                host=host,
            )
        if runner.state is not SessionState.QR or runner.driver is None:
            raise InvalidState(
                f"session {name!r} is {runner.state.value}: pairing needs a session waiting"
                " to be linked (state qr)",
                session=name,
                state=runner.state.value,
            )
        result = await runner.driver.request_pairing_code(number, notify)
        return {"session": name, **result}

    async def export(
        self, ctx: Context, name: str, offset: int = 0, size: int = 524288
    ) -> dict[str, Any]:
        """A chunk of the session's sealed (still encrypted) archive: base64 `data`, `total`,
        `done`. A running session is checkpointed first (at offset 0)."""
        return await self.admin.export(name, offset, size)

    async def import_(
        self,
        ctx: Context,
        name: str,
        data: str,
        offset: int = 0,
        final: bool = True,
        token: str | None = None,
        replace: bool = False,
    ) -> dict[str, Any]:
        """Upload an exported archive in base64 chunks (pass back `token`); on the `final` chunk
        it is verified with the daemon's key and installed as session `name` (created stopped)."""
        return await self.admin.import_(name, data, offset, final, token, replace)

    async def rekey(self, ctx: Context) -> dict[str, Any]:
        """Re-seal every archive under the current (first) key of the key file."""
        return await self.admin.rekey()
