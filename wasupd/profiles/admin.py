"""Moving sealed archives in and out of the daemon (export/import) and re-keying them.

Archives travel through the control socket in base64 chunks, so `wasupctl` needs no access to
the state directory and the archive stays encrypted end to end. An import is verified with the
daemon's keyring before it is installed; a wrong key or a damaged file is refused and nothing
is changed.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasupd.errors import InvalidArgument, InvalidState, SessionNotFound
from wasupd.profiles import archive
from wasupd.profiles.keys import load_keyring
from wasupd.supervision.states import IDLE_STATES

if TYPE_CHECKING:
    from wasupd.app import App

MAX_CHUNK = 768 * 1024


class ProfilesAdmin:
    """`session.export`, `session.import` and `profiles.rekey`."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.imports = app.config.state_path / "imports"

    def _archive(self, name: str) -> Path:
        return self.app.config.state_path / "profiles" / f"{name}.wasup"

    def _keyring(self) -> Any:
        return load_keyring(Path(self.app.config.profiles.key_file))

    async def export(self, name: str, offset: int, size: int) -> dict[str, Any]:
        runner = self.app.manager.runner(name)
        if offset == 0 and runner.state not in IDLE_STATES:
            await self.app.manager.profiles[name].checkpoint()  # export what the session has now
        path = self._archive(name)
        if not path.exists():
            raise InvalidState(
                f"session {name!r} has no sealed profile yet (link it first)", session=name
            )
        size = max(1, min(size, MAX_CHUNK))
        data = await asyncio.to_thread(_read_at, path, offset, size)
        total = path.stat().st_size
        return {
            "data": base64.b64encode(data).decode(),
            "offset": offset,
            "total": total,
            "done": offset + len(data) >= total,
        }

    async def import_(
        self, name: str, data: str, offset: int, final: bool, token: str | None, replace: bool
    ) -> dict[str, Any]:
        from wasupd.sessions import check_name

        check_name(name)
        self.imports.mkdir(parents=True, exist_ok=True, mode=0o700)
        token = token or secrets.token_hex(8)
        if not token.isalnum():
            raise InvalidArgument("bad import token")
        part = self.imports / f"{token}.part"
        try:
            chunk = base64.b64decode(data, validate=True)
        except ValueError:
            raise InvalidArgument("import data is not valid base64") from None
        await asyncio.to_thread(_write_at, part, offset, chunk)
        if not final:
            return {"token": token, "received": offset + len(chunk)}
        try:
            return await self._install(name, part, replace)
        finally:
            part.unlink(missing_ok=True)

    async def _install(self, name: str, part: Path, replace: bool) -> dict[str, Any]:
        keyring = self._keyring()
        header = await asyncio.to_thread(archive.verify, part, keyring, None)
        manager = self.app.manager
        exists = name in manager.runners
        if exists:
            if not replace:
                raise InvalidState(
                    f"session {name!r} exists; use --replace to overwrite its profile", session=name
                )
            if manager.runners[name].state not in IDLE_STATES:
                raise InvalidState(
                    f"session {name!r} is running; stop it before replacing its profile",
                    session=name,
                )
        if header.session != name:  # imported under another name: re-seal for this one
            work = self.imports / f".rename-{secrets.token_hex(4)}"
            try:
                await asyncio.to_thread(archive.unseal, part, work, keyring, header.session)
                files = sorted(p.relative_to(work) for p in work.rglob("*") if p.is_file())
                await asyncio.to_thread(archive.seal_dir, work, part, keyring, name, files)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        dest = self._archive(name)
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.replace(part, dest)
        archive.fsync_dir(dest.parent)
        if not exists:
            await manager.create(name, phone=None, options={}, start=False)
        return {
            "session": name,
            "bytes": dest.stat().st_size,
            "sealed_for": header.session,
            "key_id": header.key_id,
            "imported_at": time.time(),
        }

    async def rekey(self) -> dict[str, Any]:
        keyring = self._keyring()
        done, kept = [], []
        for name in sorted(self.app.manager.runners):
            path = self._archive(name)
            if not path.exists():
                continue
            if await asyncio.to_thread(archive.reseal, path, keyring, name, self.imports):
                done.append(name)
            else:
                kept.append(name)
        return {"current_key": keyring.current_id, "resealed": done, "already_current": kept}


def _read_at(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size)


def _write_at(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_size != offset:
            raise InvalidArgument(
                f"import chunk at offset {offset} does not follow the received bytes"
            )
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["ProfilesAdmin", "SessionNotFound"]
