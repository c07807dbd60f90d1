"""The `wasupd` entry point: config -> logs -> single-instance lock -> App -> ordered shutdown.

Signals set flags, the main loop acts on them: SIGTERM/SIGINT begin a graceful shutdown under
`daemon.shutdown_timeout` (a second SIGINT forces it), SIGHUP reloads the live config keys.
systemd: READY=1 once the socket is bound and state loaded, WATCHDOG=1 from the main loop,
STATUS= summaries, STOPPING=1 at shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import signal
import sys
from pathlib import Path

import structlog

from wasupd import __version__
from wasupd import config as configmod
from wasupd.config import Config
from wasupd.errors import Busy, ConfigError, StoreError, WasupError
from wasupd.logs import configure_logging, loop_exception_handler
from wasupd.sdnotify import Notifier

log = structlog.get_logger("wasupd")

TICK = 1.0


class InstanceLock:
    """An exclusive flock on `<directory>/wasupd.lock`. The daemon holds one in its runtime dir
    and one in its state dir: one daemon per socket and per database. `wasupd restore` takes
    the state dir's, which exists even while systemd has removed the runtime dir."""

    def __init__(self, directory: Path, mode: int = 0o750) -> None:
        self.path = directory / "wasupd.lock"
        self.mode = mode
        self.fd = -1

    def acquire(self) -> None:
        """Take the lock or raise `Busy` naming the holder's pid."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=self.mode)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise Busy(
                f"another wasupd (pid {holder}) is already running with {self.path.parent};"
                " stop it first (systemctl stop wasupd)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays; its content is only informative)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Daemon:
    """Runs the App until a signal asks it to stop."""

    def __init__(self, config: Config, config_path: Path) -> None:
        self.config = config
        self.config_path = config_path
        self.notifier = Notifier()
        self.stop_requested = asyncio.Event()
        self.sigint_count = 0
        self.reload_requested = False

    def _install_signals(self, main: asyncio.Task[int]) -> None:
        loop = asyncio.get_running_loop()

        def on_term() -> None:
            log.info("shutdown_requested", signal="SIGTERM")
            self.stop_requested.set()

        def on_int() -> None:
            self.sigint_count += 1
            if self.sigint_count > 1:
                log.warning("shutdown_forced", signal="SIGINT")
                main.cancel()
            else:
                log.info("shutdown_requested", signal="SIGINT", hint="press Ctrl-C again to force")
                self.stop_requested.set()

        def on_hup() -> None:
            self.reload_requested = True
            self.stop_requested.set()  # wake the loop; it clears the event after reloading

        loop.add_signal_handler(signal.SIGTERM, on_term)
        loop.add_signal_handler(signal.SIGINT, on_int)
        loop.add_signal_handler(signal.SIGHUP, on_hup)

    async def run(self) -> int:
        """Serve until asked to stop; 0 on a clean shutdown."""
        main = asyncio.current_task()
        assert main is not None
        asyncio.get_running_loop().set_exception_handler(loop_exception_handler)
        locks = [
            InstanceLock(self.config.runtime_path),
            InstanceLock(self.config.state_path, mode=0o700),
        ]
        try:
            for lock in locks:
                lock.acquire()
        except Busy as exc:
            log.error("already_running", error=exc.message)
            for lock in locks:
                lock.release()
            return 1
        try:
            self._install_signals(main)
            self._first_start_key()
            return await self._serve()
        except ConfigError as exc:  # found only when starting (a listen address in use, say)
            log.error("daemon_start_failed", error=exc.message, key=exc.data.get("key"))
            return 2
        except StoreError as exc:  # no database server, a wrong password, a newer schema
            log.error("daemon_start_failed", error=exc.message)
            return 1
        except asyncio.CancelledError:
            await _force_cleanup(self.config)
            return 130
        finally:
            for lock in locks:
                lock.release()

    def _first_start_key(self) -> None:
        """A user's own daemon creates its missing profile key when nothing sealed needs
        another one (`wasupd.profiles.firstkey`); under the state dir's lock, before any
        session or leftover profile loads the key."""
        from wasupd.paths import system_mode
        from wasupd.profiles.firstkey import create_at_start

        key_file = Path(self.config.profiles.key_file)
        create_at_start(key_file, self.config.state_path, system=system_mode())

    async def _serve(self) -> int:
        from wasupd.app import App
        from wasupd.services import build_services, prepare_host

        await prepare_host(self.config)
        app = App(self.config, self.config_path, build_services(self.config))
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(app.running())
            log.info("daemon_ready", socket=str(self.config.socket_path), version=__version__)
            self.notifier.ready(app.summary())
            await self._main_loop(app)
            log.info("daemon_stopping")
            self.notifier.stopping()
            try:
                async with asyncio.timeout(self.config.daemon.shutdown_timeout):
                    await stack.aclose()
            except TimeoutError:
                log.error("shutdown_deadline_passed", timeout=self.config.daemon.shutdown_timeout)
                await _force_cleanup(self.config)
                return 1
        log.info("daemon_stopped")
        return 0

    async def _main_loop(self, app: object) -> None:
        from wasupd.app import App

        assert isinstance(app, App)
        ticks = 0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._tick()):
                    await self.stop_requested.wait()
            if self.reload_requested:
                self.reload_requested = False
                self.stop_requested.clear()
                with contextlib.suppress(WasupError):
                    app.reload_config()
                continue
            if self.stop_requested.is_set():
                return
            # The watchdog ping proves this loop turns, not just that a timer fires.
            self.notifier.watchdog()
            ticks += 1
            if ticks % 10 == 0:
                self.notifier.status(app.summary())

    def _tick(self) -> float:
        interval = self.notifier.watchdog_interval
        return min(TICK, interval) if interval else TICK


async def _force_cleanup(config: Config) -> None:
    """Last resort at a forced or overdue shutdown: kill every browser of ours."""
    with contextlib.suppress(Exception):
        from wasupd.services import kill_all_browsers

        await kill_all_browsers(config)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wasupd", description="Supervisor daemon for many WhatsApp Web sessions."
    )
    p.add_argument("--config", help="config file (default: WASUPD_CONFIG or the system path)")
    p.add_argument("--check-config", action="store_true", help="validate the config and exit")
    p.add_argument("--print-config", action="store_true", help="print the effective config as TOML")
    p.add_argument("--version", action="version", version=f"wasupd {__version__}")
    sub = p.add_subparsers(dest="command")
    kg = sub.add_parser("keygen", help="create a profile key file (0600) and exit")
    kg.add_argument("path", nargs="?", help="key file (default: profiles.key_file)")
    how = kg.add_mutually_exclusive_group()
    how.add_argument("--add", action="store_true", help="add a new current key to an existing file")
    how.add_argument(
        "--retire",
        action="store_true",
        help="remove every key but the current one, once no archive or backup needs them",
    )
    kg.add_argument(
        "--force", action="store_true", help="with --retire: even if backups still need them"
    )
    rs = sub.add_parser(
        "restore",
        help="replace the database and sealed profiles with a backup made by `wasupctl backup`"
        " (the daemon must be stopped; what was there is moved aside, not deleted)",
    )
    rs.add_argument("backup", help="a backup directory (<state_dir>/backups/wasupd-...)")
    sub.add_parser(
        "check",
        help="check this host for what the daemon needs (Chromium, sandbox, key, directories,"
        " socket group, database, open-file limit); exit 1 if something would fail",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Console script `wasupd`."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "keygen" and args.force and not args.retire:
        parser.error("--force goes with --retire")
    path = configmod.config_file_from_env(args.config)
    try:
        config = configmod.load_config(path, missing_ok=args.config is None)
    except ConfigError as exc:
        print(f"wasupd: {exc.message}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"wasupd: configuration OK ({path if path.exists() else 'defaults'})")
        return 0
    if args.print_config:
        sys.stdout.write(configmod.to_toml(config))
        return 0
    if args.command == "keygen":
        if args.retire:
            return _retire_keys(config, args.path, force=args.force)
        return _keygen(config, args.path, add=args.add)
    if args.command == "restore":
        return _restore(config, Path(args.backup))
    if args.command == "check":
        from wasupd import preflight

        findings = preflight.run_checks(config, str(path) if path.exists() else "defaults")
        sys.stdout.write(preflight.render(findings))
        return preflight.exit_code(findings)
    configure_logging(config.daemon.log_level, config.daemon.log_format)
    return asyncio.run(Daemon(config, path).run())


def _restore(config: Config, backup: Path) -> int:
    import time

    from wasupd.backup import restore_backup
    from wasupd.profiles.keys import load_keyring

    if config.store.url:  # a backup's database is a SQLite file this daemon would not read
        print(
            "wasupd: [store] url names a PostgreSQL database, which `wasupd restore` does not"
            " write: restore it with pg_restore, and the sealed profiles by copying them back"
            f" into {config.state.archives}",
            file=sys.stderr,
        )
        return 1

    state = config.state_path
    lock = InstanceLock(state, mode=0o700)  # the daemon holds it while it runs
    made_lock = not lock.path.exists()
    try:
        lock.acquire()
        try:
            keyring = load_keyring(Path(config.profiles.key_file))
            aside = restore_backup(
                backup.resolve(),
                state,
                config.runtime.live_profiles,
                keyring,
                now=time.time(),
            )
        finally:
            lock.release()
            if made_lock:  # run as root, a root-owned lock would lock the daemon's user out
                lock.path.unlink(missing_ok=True)
    except WasupError as exc:
        print(f"wasupd: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"wasupd: restore failed, nothing was replaced: {exc}", file=sys.stderr)
        return 1
    print(f"wasupd: restored {backup} into {state}; the previous files are in {aside}")
    print("wasupd: start the daemon (systemctl start wasupd); sessions resume as recorded")
    return 0


def _keygen(config: Config, path: str | None, *, add: bool) -> int:
    from wasupd.profiles.keys import add_key, generate_key_file

    target = Path(path or config.profiles.key_file)
    try:
        key_id = add_key(target) if add else generate_key_file(target)
    except WasupError as exc:
        print(f"wasupd: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"wasupd: cannot write {target}: {exc.strerror}; run as root", file=sys.stderr)
        return 1
    print(f"wasupd: wrote key {key_id} to {target}")
    return 0


def _retire_keys(config: Config, path: str | None, *, force: bool) -> int:
    """Rotation, last step. Refused while a sealed profile still names an old key (that is a
    `profiles rekey` still to run), and while a backup needs one unless `force`."""
    from wasupd.backup import UNKNOWN_KEY, keys_in_use
    from wasupd.profiles.keys import load_keyring, retire_keys

    target = Path(path or config.profiles.key_file)
    try:
        ring = load_keyring(target, admin=True)
    except WasupError as exc:
        print(f"wasupd: {exc.message}", file=sys.stderr)
        return 1
    used = keys_in_use(config.state_path)
    old = [k for k in ring.keys if k != ring.current_id]
    needed = [f for k in [*old, UNKNOWN_KEY] for f in used.get(k, [])]
    profiles = [f for f in needed if f.startswith("profiles/")]
    others = [f for f in needed if not f.startswith("profiles/")]
    if profiles:
        print(
            f"wasupd: not retiring: {', '.join(profiles)} still sealed under an old key (or"
            " unreadable); run `wasupctl profiles rekey` first (after `systemctl restart"
            " wasupd` if the daemon reads the key as a systemd credential)",
            file=sys.stderr,
        )
        return 1
    if others and not force:
        print(
            f"wasupd: not retiring: {', '.join(others)} may need an old key (backups, kept"
            " files, exports); keep a copy of the key file with them, then run again with"
            " --force",
            file=sys.stderr,
        )
        return 1
    try:
        removed = retire_keys(target)
    except OSError as exc:
        print(f"wasupd: cannot rewrite {target}: {exc.strerror}; run as root", file=sys.stderr)
        return 1
    print(f"wasupd: removed {len(removed)} old key(s) from {target}: {', '.join(removed) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
