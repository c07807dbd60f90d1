"""A session's profile around its browser: unseal before launch, checkpoint, seal after exit.

The live (decrypted) profile exists only while the session runs, in the runtime dir (tmpfs
under systemd), mode 0700. A wrong key or a damaged archive raises and leaves the archive
byte-for-byte untouched: a session is never silently given an empty profile.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
from pathlib import Path

import structlog

from wasupd.config import Config
from wasupd.errors import InvalidState
from wasupd.profiles import archive
from wasupd.profiles.keys import Keyring, load_keyring
from wasupd.supervision.locks import clear_stale_singletons

log = structlog.get_logger("wasupd.profiles")

CACHE_DIRS = (
    "Default/Cache",
    "Default/Code Cache",
    "Default/GPUCache",
    "Default/Service Worker/CacheStorage",
    "Default/Service Worker/ScriptCache",
    "GrShaderCache",
    "ShaderCache",
    "GraphiteDawnCache",
    "component_crx_cache",
    "Crashpad",
)
SNAPSHOT_TRIES = 5


def tree_size(root: Path) -> int:
    """Bytes of all regular files under `root` (0 if absent)."""
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            total += st.st_size
    return total


def _signature(root: Path, files: list[Path]) -> dict[Path, tuple[int, int]]:
    sig = {}
    for rel in files:
        try:
            st = os.lstat(root / rel)
        except OSError:
            continue
        sig[rel] = (st.st_size, st.st_mtime_ns)
    return sig


def snapshot(live: Path, dest: Path) -> list[Path]:
    """Copy the essential files of a running profile into `dest`, consistently.

    Chromium keeps writing LevelDB logs and manifests while we copy. A copy counts as
    consistent when no file changed (size, mtime) between the scan before and after it;
    otherwise copy again (a few times, then take the last copy: LevelDB recovers from a
    torn log tail, which loses at most the last writes).
    """
    files: list[Path] = []
    for _ in range(SNAPSHOT_TRIES):
        shutil.rmtree(dest, ignore_errors=True)
        files = list(archive.essential_files(live))
        before = _signature(live, files)
        for rel in files:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                shutil.copy2(live / rel, target)
            except FileNotFoundError:
                continue
        if _signature(live, files) == before and list(archive.essential_files(live)) == files:
            break
    return [f for f in files if (dest / f).exists()]


class SealedProfiles:
    """`ProfileHooks` for one session: sealed archive at rest, live dir while running."""

    def __init__(
        self, session: str, *, archive_path: Path, live_dir: Path, key_file: Path, quota_mib: int
    ) -> None:
        self.session = session
        self.archive_path = archive_path
        self.live_dir = live_dir
        self.key_file = key_file
        self.quota_mib = quota_mib
        self._lock_fd = -1

    @classmethod
    def from_config(cls, config: Config, session: str) -> SealedProfiles:
        """The standard paths of DESIGN.md for `session`."""
        return cls(
            session,
            archive_path=config.state_path / "profiles" / f"{session}.wasup",
            live_dir=config.runtime_path / "profiles" / session,
            key_file=Path(config.profiles.key_file),
            quota_mib=config.profiles.quota_mib,
        )

    def keyring(self) -> Keyring:
        """The key file, checked (KeyUnavailable says what to fix)."""
        return load_keyring(self.key_file)

    async def prepare(self) -> Path:
        return await asyncio.to_thread(self._prepare)

    def _prepare(self) -> Path:
        keyring = self.keyring()  # even a new session needs a key: nothing runs unsealable
        self.live_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.live_dir.exists():
            # A leftover of a crash not yet recovered: keep the newer of the two safely.
            self._seal_live(keyring)
            shutil.rmtree(self.live_dir)
        if self.archive_path.exists():
            archive.unseal(self.archive_path, self.live_dir, keyring, self.session)
        else:
            self.live_dir.mkdir(mode=0o700)
        os.chmod(self.live_dir, 0o700)
        removed = clear_stale_singletons(self.live_dir)
        if removed:
            log.info("stale_locks_removed", session=self.session, files=removed)
        self._lock()
        return self.live_dir

    def _lock(self) -> None:
        fd = os.open(self.live_dir / ".wasupd.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InvalidState(f"profile {self.live_dir} is in use by another wasupd") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _seal_live(self, keyring: Keyring) -> None:
        archive.seal_dir(self.live_dir, self.archive_path, keyring, self.session)

    async def checkpoint(self) -> None:
        await asyncio.to_thread(self._checkpoint)

    def _checkpoint(self) -> None:
        if not self.live_dir.exists():
            return
        keyring = self.keyring()
        work = self.live_dir.parent / f".{self.session}.checkpoint"
        try:
            files = snapshot(self.live_dir, work)
            archive.seal_dir(work, self.archive_path, keyring, self.session, files=files)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self.enforce_quota()

    def enforce_quota(self) -> list[str]:
        """Prune caches when the live dir is over its quota; the dirs pruned."""
        if not self.quota_mib or tree_size(self.live_dir) <= self.quota_mib * 1024 * 1024:
            return []
        pruned = []
        for rel in CACHE_DIRS:
            target = self.live_dir / rel
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
                pruned.append(rel)
        log.info("quota_pruned", session=self.session, pruned=pruned, quota_mib=self.quota_mib)
        return pruned

    async def release(self, *, wipe: bool) -> None:
        await asyncio.to_thread(self._release, wipe)

    def _release(self, wipe: bool) -> None:
        self._unlock()
        if wipe:
            shutil.rmtree(self.live_dir, ignore_errors=True)
            self.archive_path.unlink(missing_ok=True)
            log.info("profile_wiped", session=self.session)
            return
        if not self.live_dir.exists():
            return
        try:
            self._seal_live(self.keyring())
        except Exception as exc:
            # Keep the plaintext only as long as it is the only copy (tmpfs, 0700).
            log.error("profile_seal_failed", session=self.session, error=str(exc))
            raise
        shutil.rmtree(self.live_dir)

    def sizes(self) -> dict[str, int]:
        live = tree_size(self.live_dir) if self.live_dir.exists() else 0
        sealed = self.archive_path.stat().st_size if self.archive_path.exists() else 0
        return {"live_bytes": live, "sealed_bytes": sealed}


async def recover_leftovers(config: Config) -> list[str]:
    """Daemon start: seal (then remove) every live profile a crashed daemon left behind."""
    root = config.runtime_path / "profiles"
    recovered: list[str] = []
    if not root.is_dir():
        return recovered
    for live in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        hooks = SealedProfiles.from_config(config, live.name)
        try:
            await asyncio.to_thread(hooks._seal_live, hooks.keyring())
        except Exception as exc:
            log.error("leftover_not_sealed", session=live.name, error=str(exc))
            continue
        shutil.rmtree(live, ignore_errors=True)
        recovered.append(live.name)
        log.warning("leftover_profile_sealed", session=live.name)
    for junk in root.glob(".*"):
        shutil.rmtree(junk, ignore_errors=True)
    return recovered
