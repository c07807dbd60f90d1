"""Run a real `wasupd` process for tests: temp dirs, a TOML config, a bounded start and stop."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.helpers import chromium
from tests.helpers.waiting import NotYet, eventually
from wasupd.errors import WasupError
from wasupd.profiles.keys import generate_key_file
from wasupd.rpc.client import Client

# Short prefix: a Unix socket path must fit in 108 bytes. The leak check looks for it too.
TMP_PREFIX = f"wasupd-test-{os.getpid()}-"


def socket_call(sock: Path, method: str, **params: Any) -> Any:
    """One RPC call on the control socket `sock` (as root, always allowed)."""
    with Client(sock, timeout=30) as c:
        return c.call(method, **params)


def socket_answers(sock: Path) -> bool:
    """Whether a daemon answers `daemon.status` on `sock` yet."""
    try:
        socket_call(sock, "daemon.status")
    except WasupError:
        return False
    return True


@contextlib.contextmanager
def logged_daemon(
    cmd: list[str], env: dict[str, str], log_path: Path, sock: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a daemon command (as a service would: cwd /, output to `log_path`) until its socket
    answers; on leaving, SIGTERM it and assert it exited 0 (the log's tail otherwise)."""
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd="/")
    try:
        eventually(
            lambda: daemon.poll() is None and socket_answers(sock), 30, "the daemon's socket"
        )
        yield daemon
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
    assert code == 0, log_path.read_text()[-3000:]


def await_qr(sock: Path, name: str, what: str) -> dict[str, Any]:
    """The session's `session.get` once it shows a QR (within 90 s)."""

    def qr() -> dict[str, Any] | None:
        info: dict[str, Any] = socket_call(sock, "session.get", name=name, history=0)
        return info if info["state"] == "qr" else None

    return eventually(qr, 90, what)


def make_dirs() -> tuple[Path, Path, Path]:
    """A fresh (root, runtime, state) triple under /tmp."""
    root = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
    runtime, state = root / "run", root / "state"
    runtime.mkdir()
    state.mkdir()
    return root, runtime, state


@dataclass
class DaemonProcess:
    """A running daemon and what a test needs to reach it."""

    root: Path
    config: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    key: bool = True  # write the key file before the first start (as an operator would)
    uid: int | None = None  # run the daemon as this user (it then owns `root`), not as ours
    # How to run `wasupd`: this interpreter, or (for another user) the service environment's.
    command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "wasupd.daemon"])
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "daemon.log"

    @property
    def socket(self) -> Path:
        """The control socket path."""
        return Path(self.config["daemon"]["socket"])

    @property
    def config_path(self) -> Path:
        """The config file the daemon reads."""
        return self.root / "wasupd.toml"

    @property
    def runtime_dir(self) -> Path:
        """The daemon's runtime dir (socket, live profiles)."""
        return Path(self.config["daemon"]["runtime_dir"])

    @property
    def state_dir(self) -> Path:
        """The daemon's state dir (database, archives)."""
        return Path(self.config["daemon"]["state_dir"])

    def write_config(self) -> None:
        """Write `config` as TOML."""
        self.config_path.write_text(tomli_w.dumps(self.config))

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        """Spawn `wasupd --config ...` and wait until it answers `daemon.status`."""
        self.write_config()
        key = Path(self.config["profiles"]["key_file"])
        if self.key and not key.exists():
            generate_key_file(key)
        log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(
            [
                *self._as_user(env),
                *self.command,
                "--config",
                str(self.config_path),
            ],
            stdout=log,
            stderr=log,
            env=env,
        )
        log.close()
        try:
            eventually(self._answers, timeout, "daemon.status to answer", ignore=(WasupError,))
        except NotYet as exc:
            raise AssertionError(f"daemon not ready: {exc}\n{self.log()}") from None
        return self

    def _answers(self) -> bool:
        """One readiness probe; AssertionError (not retried) once the daemon has exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        with Client(self.socket, timeout=2) as c:
            c.call("daemon.status")
        return True

    def _as_user(self, env: dict[str, str]) -> list[str]:
        """The `setpriv` prefix that runs the daemon as `uid` (which is given `root`), or []."""
        if self.uid is None or self.uid == os.geteuid():
            return []
        for dirpath, _, files in os.walk(self.root):
            for name in [dirpath, *(os.path.join(dirpath, f) for f in files)]:
                os.chown(name, self.uid, self.uid)
        env["HOME"] = str(self.root)
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups"]

    def client(self, timeout: float = 30.0) -> Client:
        """A blocking client on the socket."""
        return Client(self.socket, timeout=timeout)

    def call(self, method: str, timeout: float = 60.0, **params: Any) -> Any:
        """One RPC call on a fresh connection."""
        with self.client(timeout) as c:
            return c.call(method, **params)

    def wait_state(self, name: str, state: str, timeout: float) -> dict[str, Any]:
        """Poll until session `name` is in `state`; its record. On timeout the AssertionError
        carries the session's recent transitions, so a CI failure says where it got stuck."""
        try:
            return dict(
                eventually(
                    lambda: self.call("session.get", name=name, history=0),
                    timeout,
                    f"session {name!r} to be {state!r}",
                    ok=lambda info: info["state"] == state,
                    interval=0.1,
                )
            )
        except NotYet as exc:
            history = self.call("session.get", name=name, history=20)["history"]
            steps = "\n".join(f"  {h['from']} -> {h['to']}: {h['reason']}" for h in history)
            now = exc.last
            raise AssertionError(
                f"session {name!r} not {state!r} after {timeout} s "
                f"(now {now['state']!r}: {now['reason']}); transitions:\n{steps}"
            ) from None

    def log_tail(self, lines: int = 60) -> str:
        """The last `lines` lines of the daemon's log."""
        return "\n".join(self.log().splitlines()[-lines:])

    def log(self) -> str:
        """The daemon's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal the daemon and wait for it to exit; its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"daemon did not stop within {timeout} s:\n{self.log()}") from None

    def kill9(self) -> None:
        """SIGKILL the daemon (its browsers are left behind, as after a crash)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


def base_config(runtime: Path, state: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A config for tests: everything under temp dirs, fast timeouts, no socket group."""
    cfg: dict[str, Any] = {
        "daemon": {
            "socket": str(runtime / "wasupd.sock"),
            "socket_group": "",
            "runtime_dir": str(runtime),
            "state_dir": str(state),
            "log_format": "json",
            "log_level": "debug",
            "shutdown_timeout": 30.0,
            "start_stagger": 0.1,
        },
        "browser": {
            "executable": chromium.executable(),
            "start_timeout": 30.0,
            "stop_timeout": 5.0,
        },
        "profiles": {"key_file": str(runtime.parent / "profile.key")},
        "send": {"pacing": False},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


@pytest.fixture
def daemon_factory(request: pytest.FixtureRequest) -> Iterator[Any]:
    """`daemon_factory(**sections)` -> a started DaemonProcess; all are stopped at teardown.
    `key=False` starts it without a key file, `uid=N` as user N (needs root; it runs from the
    `service_env` fixture's interpreter, which that user can run wherever the checkout is).
    When the test failed, each daemon's log tail is printed (pytest shows it with the failure)."""
    made: list[DaemonProcess] = []

    def factory(
        start: bool = True, key: bool = True, uid: int | None = None, **sections: dict[str, Any]
    ) -> DaemonProcess:
        root, runtime, state = make_dirs()
        d = DaemonProcess(root, base_config(runtime, state, **sections), key=key, uid=uid)
        if uid is not None and uid != os.geteuid():
            d.command = request.getfixturevalue("service_env").wasupd
        made.append(d)
        return d.start() if start else d

    yield factory
    report = getattr(request.node, "call_report", None)
    for d in made:
        if report is not None and report.failed:
            print(f"--- log tail of the daemon in {d.root} ---\n{d.log_tail()}")
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
        shutil.rmtree(d.root, ignore_errors=True)
