"""Moving sealed archives in and out of the daemon (export/import) and re-keying them.

Archives travel through the control socket in base64 chunks, so `wasupctl` needs no access to
the state directory and the archive stays encrypted end to end. An import is verified with the
daemon's keyring before it is installed (re-sealed under the current key and the new name); a
wrong key or a damaged file is refused and nothing is changed.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import time
from pathlib import Path
from typing import Any

import structlog

from wasupd.backup import write_backup
from wasupd.config import Config
from wasupd.errors import (
    Busy,
    InvalidArgument,
    InvalidState,
    SessionNotFound,
    StoreError,
    WasupError,
)
from wasupd.profiles import archive
from wasupd.profiles.keys import Keyring, load_keyring
from wasupd.profiles.transfer import import_archive, rekey_archives
from wasupd.sessions import SessionManager, check_name
from wasupd.supervision.states import IDLE_STATES

log = structlog.get_logger("wasupd.profiles")

MAX_CHUNK = 768 * 1024


class ProfilesAdmin:
    """`session.export`, `session.import`, `profiles.rekey` and `daemon.backup`.

    Lives inside `async with`: a backup being written is its task, finished before it closes.
    """

    def __init__(self, *, config: Config, sessions: SessionManager) -> None:
        self.layout = config.state
        self.store_url = config.store.url
        self.key_file = Path(config.profiles.key_file)
        self.sessions = sessions
        self.imports = self.layout.imports
        self.exports = self.layout.exports
        self._group = asyncio.TaskGroup()
        self._backup: asyncio.Task[dict[str, Any] | Exception] | None = None

    async def __aenter__(self) -> ProfilesAdmin:
        await self._group.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        # A backup's thread cannot be stopped: let it finish (the shutdown deadline bounds it).
        await self._group.__aexit__(None, None, None)

    def _archive(self, name: str) -> Path:
        return self.layout.archive(name)

    def _keyring(self) -> Keyring:
        return load_keyring(self.key_file)

    async def export(self, name: str, offset: int, size: int) -> dict[str, Any]:
        """A chunk of `name`'s archive. At offset 0 a running session is checkpointed and the
        archive is pinned (hard link): later chunks come from that same file even if a
        checkpoint replaces the archive meanwhile."""
        runner = self.sessions.runner(name)
        pinned = self.exports / f"{name}{archive.SUFFIX}"
        if offset == 0:
            if runner.state not in IDLE_STATES:
                await self.sessions.profiles[name].checkpoint()  # export what it has now
            await asyncio.to_thread(self._pin, self._archive(name), pinned)
        elif not pinned.exists():
            raise InvalidArgument(f"no export of {name!r} in progress: start again at offset 0")
        size = max(1, min(size, MAX_CHUNK))
        data = await asyncio.to_thread(_read_at, pinned, offset, size)
        total = pinned.stat().st_size
        done = offset + len(data) >= total
        if done:
            pinned.unlink(missing_ok=True)
        return {
            "data": base64.b64encode(data).decode(),
            "offset": offset,
            "total": total,
            "done": done,
        }

    def _pin(self, path: Path, pinned: Path) -> None:
        if not path.exists():
            raise InvalidState(
                f"session {pinned.stem!r} has no sealed profile yet (start it once)",
                session=pinned.stem,
            )
        self.exports.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = pinned.with_name(f".{pinned.name}.{secrets.token_hex(4)}")
        os.link(path, tmp)
        os.replace(tmp, pinned)

    async def import_(
        self, name: str, data: str, offset: int, final: bool, token: str | None, replace: bool
    ) -> dict[str, Any]:
        """Receive one base64 chunk; on the final one verify and install the archive."""
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
        sealed_for = (await asyncio.to_thread(archive.verify, part, keyring)).session
        manager = self.sessions
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
        dest = self._archive(name)
        header = await asyncio.to_thread(
            import_archive, part, dest, keyring, name, replace=replace or not exists
        )
        if not exists:
            await manager.create(name, phone=None, options={}, start=False)
        return {
            "session": name,
            "bytes": dest.stat().st_size,
            "sealed_for": sealed_for,
            "key_id": header.key_id,
            "imported_at": time.time(),
        }

    async def backup(self, keep: int) -> dict[str, Any]:
        """Checkpoint every running session, then write a backup (see `wasupd.backup`). A
        session whose checkpoint fails is backed up with its previous archive and named in
        `not_checkpointed` with the reason. The backup runs to its end even if the caller
        goes away (its thread cannot be stopped), and no second one starts before that."""
        if keep < 0:
            raise InvalidArgument("keep must be 0 (keep every backup) or more")
        if self.store_url:
            from wasupd.store.backend.postgres import where as postgres_where  # PostgreSQL only

            # Half a backup (archives without their database) would restore to a daemon that
            # does not know its sessions: refuse, and say what backs up each part instead.
            raise StoreError(
                f"this daemon's store is PostgreSQL ({postgres_where(self.store_url)}), which"
                " a wasupd backup does not copy: back the database up with pg_dump (e.g."
                f" `pg_dump -Fc -f wasupd.dump DBNAME`), and the sealed profiles in"
                f" {self.layout.archives} with any file copy (archives are only ever replaced"
                " by rename) or `wasupctl session export`"
            )
        if self._backup is not None and not self._backup.done():
            raise Busy("a backup is already being written; wait for it to finish")
        self._backup = self._group.create_task(self._write_backup(keep), name="backup")
        outcome = await asyncio.shield(self._backup)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _write_backup(self, keep: int) -> dict[str, Any] | Exception:
        """The backup task. A failure is its result, handed to the caller: raised in the
        group, it would cancel the group (and a caller that left would never see it)."""
        try:
            return await self._checkpoint_and_write(keep)
        except Exception as exc:
            return exc

    async def _checkpoint_and_write(self, keep: int) -> dict[str, Any]:
        keyring = self._keyring()
        manager = self.sessions
        stale: dict[str, str] = {}
        for name, runner in list(manager.runners.items()):
            hooks = manager.profiles.get(name)
            if hooks is not None and runner.state not in IDLE_STATES:
                try:
                    await hooks.checkpoint()
                except Exception as exc:  # the previous archive is still a good backup
                    stale[name] = exc.message if isinstance(exc, WasupError) else repr(exc)
        archives = {name: self._archive(name) for name in manager.runners}
        result = await asyncio.to_thread(
            write_backup,
            self.layout.root,
            archives,
            keyring,
            now=time.time(),
            keep=keep,
        )
        log.info("backup_written", **result.as_dict(), not_checkpointed=stale)
        if result.damaged:
            log.error("backup_left_out_damaged_archives", damaged=result.damaged)
        return {**result.as_dict(), "not_checkpointed": stale}

    async def rekey(self) -> dict[str, Any]:
        """Re-seal every archive under the current key."""
        keyring = self._keyring()
        root = self.layout.archives
        report = await asyncio.to_thread(rekey_archives, root, keyring)
        return {
            "current_key": report.current_key,
            "resealed": report.resealed,
            "already_current": report.already_current,
            "failed": report.failed,
        }


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
