"""A session's profile around its browser: unseal before launch, checkpoint, seal after exit.

The live (decrypted) profile exists only while the session runs, in the runtime dir (tmpfs
under systemd), mode 0700. A wrong or missing key or a damaged archive raises and leaves the
archive byte-for-byte untouched, and a profile without storage is never sealed over an archive:
a session is never silently given, or left with, an empty profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from wasupd.config import Config
from wasupd.errors import ProfileError, WasupError
from wasupd.profiles import archive
from wasupd.profiles.fsutil import fsync_dir, remove_tree, temp_name, tree_size
from wasupd.profiles.keys import Keyring, KeyringLoader, keyring_loader
from wasupd.profiles.selection import CACHE_DIRS, ESSENTIAL_UNITS, essential_files
from wasupd.profiles.snapshot import Signature, SnapshotReport, signature, snapshot
from wasupd.supervision.locks import clear_stale_singletons

log = structlog.get_logger("wasupd.profiles")

LOCK_NAME = ".wasupd.lock"
MIB = 1 << 20
# How old `sizes()` may be. Status and metrics call it for every session on the event loop, and
# a walk of a live profile costs about 1 ms: with 100 sessions and `daemon.status` once a second,
# a 2 s TTL was 50 walks a second, over 3% of a core. The sizes change slowly; a checkpoint,
# an unseal, a prune or a release measure them afresh.
SIZES_TTL = 60.0
# A profile holding none of these has lost its storage: it is never sealed over an archive.
STORAGE = ("Default/IndexedDB", "Default/Local Storage")


def archive_path_for(config: Config, session: str) -> Path:
    """`<state>/profiles/<session>.wasup`."""
    return config.state.archive(session)


def live_dir_for(config: Config, session: str) -> Path:
    """`<runtime>/profiles/<session>/`."""
    return config.runtime.live_profile(session)


def has_storage(files: list[Path]) -> bool:
    """True when `files` (relative) include any IndexedDB or Local Storage file."""
    return any(str(f).startswith(STORAGE) for f in files)


def _newest_mtime(root: Path, files: list[Path]) -> int:
    newest = 0
    for rel in files:
        with contextlib.suppress(OSError):
            newest = max(newest, os.lstat(root / rel).st_mtime_ns)
    return newest


def _held_elsewhere(live: Path) -> bool:
    """True when another process holds the daemon lock of live profile `live`."""
    try:
        fd = os.open(live / LOCK_NAME, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def seal_live(live: Path, dest: Path, keyring: Keyring, session: str) -> int | None:
    """Seal the live profile `live` over `dest`; its size, or None when `live` has no storage
    and `dest` exists (the archive is kept rather than replaced by an empty profile)."""
    files = list(essential_files(live))
    if dest.exists() and not has_storage(files):
        log.error("empty_profile_not_sealed", session=session, archive=str(dest))
        return None
    return archive.seal_dir(live, dest, keyring, session, files=files)


def recover_live_dir(live: Path, dest: Path, keyring: Keyring, session: str) -> str:
    """A live profile left by a crash: seal it when it is newer than its archive, then remove
    it; the action taken. `ProfileError` (nothing touched) when another daemon holds it."""
    if _held_elsewhere(live):
        raise ProfileError(
            f"live profile {live} is in use by another wasupd process; stop it first",
            path=str(live),
        )
    files = list(essential_files(live))
    action = "removed (nothing to keep)"
    if files:
        if dest.exists() and dest.stat().st_mtime_ns > _newest_mtime(live, files):
            action = "removed (the archive is newer)"
        elif seal_live(live, dest, keyring, session) is not None:
            action = "sealed"
        else:
            action = "removed (no storage; the archive is kept)"
    remove_tree(live)
    return action


# The key id, the (inode, size, mtime) of every essential file before a checkpoint copied
# them, and the (inode, size, mtime) of the archive it wrote.
_SealedFrom = tuple[str, list[Signature], tuple[int, int, int] | None]


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class SealedProfiles:
    """`ProfileHooks` for one session: a sealed archive at rest, a live dir while running.

    Blocking work runs in a worker thread (the event loop never waits on disk or crypto);
    `prepare`, `checkpoint` and `release` are serialised for the session.
    """

    def __init__(
        self,
        session: str,
        *,
        archive_path: Path,
        live_dir: Path,
        keyring_loader: KeyringLoader,
        quota_mib: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.archive_path = archive_path
        self.live_dir = live_dir
        self.load_keyring = keyring_loader
        self.quota_mib = quota_mib
        self.clock = clock
        self._mutex = threading.Lock()
        self._lock_fd = -1
        self._sizes: dict[str, int] = {}
        self._sizes_at = -SIZES_TTL
        self.last_checkpoint = SnapshotReport()  # how the latest checkpoint's copy went
        self._sealed_from: _SealedFrom | None = None  # what the last checkpoint sealed

    @classmethod
    def from_config(cls, config: Config, session: str) -> SealedProfiles:
        """The paths of `session` (wasupd.paths layouts) and its `[profiles]` settings."""
        return cls(
            session,
            archive_path=archive_path_for(config, session),
            live_dir=live_dir_for(config, session),
            keyring_loader=keyring_loader(Path(config.profiles.key_file)),
            quota_mib=config.profiles.quota_mib,
        )

    # -- ProfileHooks ------------------------------------------------------------------------

    async def prepare(self) -> Path:
        """Unseal the archive (if any) into the live dir (0700), clear provably stale Chromium
        locks, take the daemon's lock, prune caches over quota; the live dir. Raises
        `KeyUnavailable`/`ProfileError` with the archive untouched."""
        return await asyncio.to_thread(self.prepare_sync)

    async def checkpoint(self) -> None:
        """Seal a consistent copy of the running profile (see `wasupd.profiles.snapshot`)."""
        await asyncio.to_thread(self.checkpoint_sync)

    async def release(self, *, wipe: bool) -> None:
        """After the browser exited: seal then remove the live dir; with `wipe`, remove both
        the live dir and the archive (logout, delete)."""
        await asyncio.to_thread(self.release_sync, wipe)

    def sizes(self) -> dict[str, int]:
        """`live_bytes` (the live dir, caches included), `sealed_bytes`, `quota_bytes`;
        measured at most every `SIZES_TTL` seconds (status and metrics call it often)."""
        now = self.clock()
        if now - self._sizes_at >= SIZES_TTL:
            sealed = self.archive_path.stat().st_size if self.archive_path.exists() else 0
            self._sizes = {
                "live_bytes": tree_size(self.live_dir),
                "sealed_bytes": sealed,
                "quota_bytes": self.quota_mib * MIB,
            }
            self._sizes_at = now
        return dict(self._sizes)

    # -- the blocking parts -------------------------------------------------------------------

    def prepare_sync(self) -> Path:
        """`prepare` in the calling thread."""
        with self._mutex:
            self._drop_lock()  # held only if a previous run of this session was never released
            self._sealed_from = None
            keyring = self.load_keyring()  # a new session needs a key too: nothing unsealable runs
            self.live_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self.live_dir.exists():
                action = recover_live_dir(self.live_dir, self.archive_path, keyring, self.session)
                log.warning("leftover_profile", session=self.session, action=action)
            started = time.monotonic()
            try:
                self._unseal(keyring)
            except OSError as exc:
                raise ProfileError(
                    f"cannot unseal the profile of {self.session!r} into {self.live_dir}:"
                    f" {exc.strerror or exc}",
                    path=str(self.live_dir),
                ) from None
            self._take_lock()
            removed = clear_stale_singletons(self.live_dir)
            if removed:
                log.info("stale_locks_removed", session=self.session, files=removed)
            self._sizes_at = -SIZES_TTL
            log.info(
                "profile_unsealed",
                session=self.session,
                seconds=round(time.monotonic() - started, 3),
                live_bytes=tree_size(self.live_dir),
            )
            self._prune_over_quota()
        return self.live_dir

    def _unseal(self, keyring: Keyring) -> None:
        if self.archive_path.exists():
            archive.unseal(self.archive_path, self.live_dir, keyring, self.session)
        else:
            os.mkdir(self.live_dir, 0o700)
        os.chmod(self.live_dir, 0o700)

    def _take_lock(self) -> None:
        fd = os.open(self.live_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ProfileError(
                f"live profile {self.live_dir} is in use by another wasupd process",
                path=str(self.live_dir),
            ) from None
        self._drop_lock()
        self._lock_fd = fd

    def _drop_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def checkpoint_sync(self) -> int | None:
        """`checkpoint` in the calling thread; the archive's size, None if there was nothing
        to seal. `ProfileError` when no consistent copy could be had (the previous archive stays).

        Nothing is sealed when no essential file was added, removed, replaced or changed in size
        or mtime since the last checkpoint copied them, the key is the same and the archive is
        the one it wrote: an idle session's checkpoint costs a few dozen `lstat`s."""
        with self._mutex:
            if not self.live_dir.is_dir():
                return None
            keyring = self.load_keyring()
            files = [signature(self.live_dir, unit) for unit in ESSENTIAL_UNITS]
            if self._sealed_from == (keyring.current_id, files, _identity(self.archive_path)):
                log.debug("checkpoint_unchanged", session=self.session)
                return None
            started = time.monotonic()
            work = temp_name(self.live_dir, "checkpoint")
            try:
                report = self.last_checkpoint = snapshot(self.live_dir, work)
                size = seal_live(work, self.archive_path, keyring, self.session)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            # Files that changed during the copy differ from `files` next time: sealed again.
            self._sealed_from = (keyring.current_id, files, _identity(self.archive_path))
            self._sizes_at = -SIZES_TTL
            log.info(
                "checkpoint_sealed",
                session=self.session,
                sealed_bytes=size,
                recopies=report.recopies,
                paused_units=report.paused_units,
                longest_pause_ms=round(report.longest_pause * 1000, 1),
                seconds=round(time.monotonic() - started, 3),
            )
            self._prune_over_quota()
        return size

    def release_sync(self, wipe: bool) -> None:
        """`release` in the calling thread. When the key cannot be loaded the live dir is kept
        (it is the newest copy) and the error raised; the next daemon start retries."""
        with self._mutex:
            self._sealed_from = None
            try:
                if wipe:
                    self._wipe()
                elif self.live_dir.exists():
                    seal_live(self.live_dir, self.archive_path, self.load_keyring(), self.session)
                    remove_tree(self.live_dir)
                    log.info("profile_sealed", session=self.session)
            finally:
                self._drop_lock()
                self._sizes_at = -SIZES_TTL

    def _wipe(self) -> None:
        remove_tree(self.live_dir)
        with archive.archive_lock(self.archive_path):
            if self.archive_path.exists():
                self.archive_path.unlink()
                fsync_dir(self.archive_path.parent)
        log.info("profile_wiped", session=self.session)

    # -- quota ---------------------------------------------------------------------------------

    def enforce_quota(self) -> list[str]:
        """Over `quota_mib`, empty the live profile's caches; the cache dirs emptied. Caches are
        rebuilt on demand; essential data is never pruned (a warning says when it alone is over)."""
        with self._mutex:
            return self._prune_over_quota()

    def _prune_over_quota(self) -> list[str]:
        limit = self.quota_mib * MIB
        if not limit or not self.live_dir.is_dir() or tree_size(self.live_dir) <= limit:
            return []
        pruned = [rel for rel in CACHE_DIRS if _empty_dir(self.live_dir / rel)]
        after = tree_size(self.live_dir)
        self._sizes_at = -SIZES_TTL
        log.info("quota_pruned", session=self.session, pruned=pruned, live_bytes=after)
        if after > limit:
            log.warning(
                "profile_over_quota", session=self.session, live_bytes=after, quota_bytes=limit
            )
        return pruned


def _empty_dir(path: Path) -> bool:
    """Delete what is inside `path` (never following symlinks); True if anything was."""
    if path.is_symlink() or not path.is_dir():
        return False
    found = False
    for child in path.iterdir():
        found = True
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()
    return found


def recover_all(live_root: Path, archive_root: Path, loader: KeyringLoader) -> dict[str, str]:
    """Daemon start, before any session runs: every live profile a crashed daemon left is
    sealed (when newer than its archive) and removed, and hidden temp dirs (unseal, checkpoint,
    trash) are deleted; what happened to each. A profile that cannot be sealed (no key) is
    kept, 0700 in the runtime dir, rather than lost; the session's start then fails with why."""
    outcomes: dict[str, str] = {}
    if not live_root.is_dir():
        return outcomes
    for entry in sorted(live_root.iterdir()):
        if entry.name.startswith("."):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            outcomes[entry.name] = "removed (temporary)"
        elif entry.is_dir() and not entry.is_symlink():
            try:
                dest = archive_root / f"{entry.name}{archive.SUFFIX}"
                outcomes[entry.name] = recover_live_dir(entry, dest, loader(), entry.name)
            except (WasupError, OSError) as exc:
                outcomes[entry.name] = f"kept: {getattr(exc, 'message', exc)}"
    for name, outcome in outcomes.items():
        (log.error if outcome.startswith("kept") else log.warning)(
            "leftover_profile", session=name, action=outcome
        )
    return outcomes


async def recover_leftovers(config: Config) -> list[str]:
    """`recover_all` for the configured dirs, in a thread; the sessions whose profile was sealed."""
    outcomes = await asyncio.to_thread(
        recover_all,
        config.runtime.live_profiles,
        config.state.archives,
        keyring_loader(Path(config.profiles.key_file)),
    )
    return [name for name, outcome in outcomes.items() if outcome == "sealed"]


__all__ = [
    "SealedProfiles",
    "recover_all",
    "recover_leftovers",
    "recover_live_dir",
    "seal_live",
]
