"""The control socket of a real daemon process: framing, bad input, access control, load."""

from __future__ import annotations

import grp
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.daemon import DaemonProcess
from tests.helpers.waiting import eventually
from wasupd.errors import Busy, DaemonUnreachable, SessionNotFound

WASUPCTL = [sys.executable, "-m", "wasupctl.app"]


def raw_exchange(
    path: Path, data: bytes, *, read: bool = True, timeout: float = 10
) -> list[dict[str, Any]]:
    """Send raw bytes, then read newline-delimited replies until the daemon closes or goes quiet."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    try:
        s.sendall(data)
        if not read:
            return []
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    finally:
        s.close()
    return [json.loads(line) for line in buf.splitlines() if line.strip()]


def connect_patiently(s: socket.socket, path: Path, timeout: float = 30) -> None:
    """connect(), retrying while the listen backlog is full (EAGAIN on a loaded machine)."""
    # The backlog drains as the daemon accepts.
    eventually(
        lambda: s.connect(str(path)) is None,
        timeout,
        "the daemon to accept the connection",
        interval=0.01,
        ignore=(BlockingIOError,),
    )


def ctl(
    d: DaemonProcess, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run wasupctl against the daemon."""
    return subprocess.run(
        [*WASUPCTL, "--socket", str(d.socket), *args], input=stdin, capture_output=True, timeout=60
    )


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One daemon for the read-only protocol tests of this module."""
    from tests.helpers.daemon import base_config, make_dirs

    root, runtime, state = make_dirs()
    d = DaemonProcess(root, base_config(runtime, state)).start()
    yield d
    assert d.stop() == 0


def test_status_over_cli_table_and_json(shared_daemon: DaemonProcess) -> None:
    """`wasupctl status` prints a readable summary, and `--json` a document with the pid."""
    out = ctl(shared_daemon, "status")
    assert out.returncode == 0, out.stderr
    assert b"wasupd 0.1.0" in out.stdout and b"no sessions" in out.stdout
    out = ctl(shared_daemon, "--json", "status")
    data = json.loads(out.stdout)
    assert data["pid"] == shared_daemon.proc.pid  # type: ignore[union-attr]
    assert data["sessions"] == []


def test_socket_and_directory_modes(shared_daemon: DaemonProcess) -> None:
    """The socket is 0660 and its directory 0750."""
    assert stat.S_IMODE(shared_daemon.socket.stat().st_mode) == 0o660
    assert stat.S_IMODE(shared_daemon.socket.parent.stat().st_mode) == 0o750


@pytest.mark.parametrize(
    ("line", "code", "fragment"),
    [
        (b"{nope\n", -32700, "parse error"),
        (b"[1,2,3]\n", -32600, "got a batch"),
        (b"42\n", -32600, "got int"),
        (b'{"jsonrpc":"1.0","id":1,"method":"daemon.status"}\n', -32600, '"jsonrpc" must be "2.0"'),
        (b'{"jsonrpc":"2.0","id":2,"method":"no.such"}\n', -32601, "method not found"),
        (
            b'{"jsonrpc":"2.0","id":3,"method":"session.get","params":{"name":5}}\n',
            -32602,
            "'name' must be str",
        ),
        (
            b'{"jsonrpc":"2.0","id":4,"method":"session.get","params":{"name":"zz"}}\n',
            SessionNotFound.code,
            "no session named",
        ),
    ],
)
def test_bad_requests_get_errors_and_daemon_stays_up(
    shared_daemon: DaemonProcess, line: bytes, code: int, fragment: str
) -> None:
    """Each kind of bad input gets the right error reply, and the daemon keeps answering."""
    replies = raw_exchange(shared_daemon.socket, line)
    assert len(replies) == 1
    assert replies[0]["error"]["code"] == code
    assert fragment in replies[0]["error"]["message"]
    assert shared_daemon.call("daemon.status")["pid"]


def test_oversized_line_is_refused_and_connection_closed(shared_daemon: DaemonProcess) -> None:
    """A 5 MiB line gets one 'message too large' error, the connection closes, the daemon lives."""
    big = (
        b'{"jsonrpc":"2.0","id":1,"method":"daemon.status","params":{"x":"'
        + b"a" * (5 << 20)
        + b'"}}\n'
    )
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(str(shared_daemon.socket))
    try:
        with pytest.raises(OSError):  # the daemon stops reading and closes: our send fails
            s.sendall(big)
            s.shutdown(socket.SHUT_WR)
            buf = b""
            while chunk := s.recv(65536):
                buf += chunk
            reply = json.loads(buf.splitlines()[0])
            assert "message too large" in reply["error"]["message"]
            raise OSError("closed as expected")
    finally:
        s.close()
    assert shared_daemon.call("daemon.status")["pid"]


def test_half_written_message_then_disconnect(shared_daemon: DaemonProcess) -> None:
    """A client that vanishes mid-message is dropped quietly; the daemon keeps answering."""
    raw_exchange(shared_daemon.socket, b'{"jsonrpc":"2.0","id":1,"meth', read=False)
    assert shared_daemon.call("daemon.status")["pid"]


def test_concurrent_requests_on_one_connection(shared_daemon: DaemonProcess) -> None:
    """Many requests pipelined on one connection all get their own replies."""
    lines = b"".join(
        json.dumps({"jsonrpc": "2.0", "id": i, "method": "daemon.health"}).encode() + b"\n"
        for i in range(100)
    )
    replies = raw_exchange(shared_daemon.socket, lines)
    assert sorted(r["id"] for r in replies) == list(range(100))
    assert all(r["result"]["status"] == "OK" for r in replies)


def test_inline_and_task_methods_interleaved_on_one_connection(
    shared_daemon: DaemonProcess,
) -> None:
    """Methods answered inline (daemon.health) and in tasks (inbox.list, which reads the store)
    pipelined on one connection, with bad lines between them: every id gets its own answer."""
    methods = ["daemon.health", "inbox.list", "session.list", "no.such.method"]
    lines = b"".join(
        json.dumps({"jsonrpc": "2.0", "id": i, "method": methods[i % 4]}).encode() + b"\n"
        for i in range(200)
    )
    replies = {r["id"]: r for r in raw_exchange(shared_daemon.socket, lines)}
    assert sorted(replies) == list(range(200))
    for i, r in replies.items():
        if methods[i % 4] == "no.such.method":
            assert r["error"]["code"] == -32601
        else:
            assert "result" in r, r


def test_200_concurrent_connections(shared_daemon: DaemonProcess) -> None:
    """200 clients connected at once each get an answer."""
    socks = []
    try:
        for i in range(200):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(30)
            socks.append(s)
            connect_patiently(s, shared_daemon.socket)
            s.sendall(
                json.dumps({"jsonrpc": "2.0", "id": i, "method": "daemon.status"}).encode() + b"\n"
            )
        answered = 0
        for s in socks:
            buf = b""
            while not buf.endswith(b"\n"):
                buf += s.recv(65536)
            answered += "result" in json.loads(buf)
        assert answered == 200
    finally:
        for s in socks:
            s.close()


def test_notification_gets_no_reply(shared_daemon: DaemonProcess) -> None:
    """A request without an id is a notification: no reply is written."""
    replies = raw_exchange(
        shared_daemon.socket,
        b'{"jsonrpc":"2.0","method":"daemon.status"}\n{"jsonrpc":"2.0","id":9,"method":"daemon.status"}\n',
    )
    assert [r["id"] for r in replies] == [9]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=10,
)
requests = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0"]), "id": st.integers(0, 10**6)},
    optional={
        "method": st.sampled_from(
            [
                "daemon.status",
                "daemon.health",
                "session.get",
                "session.list",
                "session.qr",
                "session.start",
                "message.get",
                "x",
                "",
            ]
        )
        | st.text(max_size=10),
        "params": json_values,
    },
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(req=requests)
def test_fuzzed_requests_always_get_a_reply(
    shared_daemon: DaemonProcess, req: dict[str, Any]
) -> None:
    """Random requests each get exactly one reply (result or error) and never kill the daemon."""
    replies = raw_exchange(shared_daemon.socket, json.dumps(req).encode() + b"\n")
    assert len(replies) == 1
    assert ("result" in replies[0]) != ("error" in replies[0])


@pytest.mark.service_user
@pytest.mark.parametrize("pause", [0.0, 0.3])
def test_unauthorized_peer_is_refused_and_logged(daemon_factory: Any, pause: float) -> None:
    """A peer with another uid, past the file permissions, is refused by SO_PEERCRED and logged;
    it reads why even when it sends its request well after the refusal was written."""
    d = daemon_factory(daemon={"socket_mode": 0o666})
    for p in (d.root, d.runtime_dir):  # open the filesystem gate so the SO_PEERCRED gate is tested
        os.chmod(p, 0o755)
    # perl: the unprivileged client must not depend on an interpreter under root's home.
    script = (
        'use IO::Socket::UNIX; my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!";'
        f" select(undef, undef, undef, {pause});"
        ' print $s qq({"jsonrpc":"2.0","id":1,"method":"daemon.status"}\\n); print scalar <$s>;'
    )
    out = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "perl",
            "-e",
            script,
            str(d.socket),
        ],
        capture_output=True,
        timeout=30,
        text=True,
    )
    assert out.stdout, out.stderr
    reply = json.loads(out.stdout)
    assert reply["error"]["data"]["name"] == "Unauthorized"
    assert "uid 65534" in reply["error"]["message"]
    assert d.call("daemon.status")["pid"]
    assert '"peer_refused"' in d.log() and '"uid": 65534' in d.log()


def test_second_daemon_refused_and_stale_socket_replaced(daemon_factory: Any) -> None:
    """A second daemon on the same runtime dir exits 1; a dead daemon's socket is replaced."""
    d = daemon_factory()
    twin = subprocess.run(
        [sys.executable, "-m", "wasupd.daemon", "--config", str(d.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert twin.returncode == 1
    assert "already running" in twin.stderr and str(d.proc.pid) in twin.stderr  # type: ignore[union-attr]
    assert d.call("daemon.status")["pid"]
    d.kill9()
    assert d.socket.exists()  # left behind by the SIGKILL
    d.start()
    assert d.call("daemon.status")["pid"] == d.proc.pid  # type: ignore[union-attr]


def test_sigterm_during_traffic_exits_cleanly(daemon_factory: Any) -> None:
    """SIGTERM while clients hammer the socket: every call answered or cleanly refused, exit 0."""
    d = daemon_factory()
    outcomes: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                with d.client(timeout=10) as c:
                    for _ in range(50):
                        c.call("daemon.status")
                        outcomes.append("ok")
            except Busy:
                outcomes.append("busy")
            except DaemonUnreachable:
                outcomes.append("closed")
                return

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    eventually(lambda: outcomes.count("ok"), 30, "200 answered calls", ok=lambda n: n >= 200)
    assert d.stop() == 0
    stop.set()
    for t in threads:
        t.join(20)
    assert set(outcomes) <= {"ok", "busy", "closed"}
    assert outcomes.count("ok") >= 200
    assert not d.socket.exists()


def test_unreachable_daemon_exit_code(tmp_path: Path) -> None:
    """With no daemon, wasupctl exits 3 and names the socket and how to start the daemon."""
    sock = tmp_path / "none.sock"
    out = subprocess.run(
        [*WASUPCTL, "--socket", str(sock), "status"], capture_output=True, timeout=30, text=True
    )
    assert out.returncode == 3
    assert str(sock) in out.stderr and "systemctl start wasupd" in out.stderr


def test_cli_error_exit_codes(shared_daemon: DaemonProcess) -> None:
    """Not found exits 4, a bad session name exits 2, one line on stderr."""
    out = ctl(shared_daemon, "session", "show", "nosuch")
    assert out.returncode == 4
    assert out.stderr.decode().count("\n") == 1
    out = ctl(shared_daemon, "session", "create", "Bad Name", "--no-wait")
    assert out.returncode == 2, out.stderr


def test_help_is_fast() -> None:
    """`wasupctl --help` starts well under half a second (lazy imports). Best of five: on a
    shared machine a single run measures the neighbours as much as the start-up."""
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "wasupctl.app", "--help"], capture_output=True, timeout=30
        )
        times.append(time.perf_counter() - t0)
        assert out.returncode == 0
    assert min(times) < 0.5, times


@pytest.mark.service_user
def test_socket_group_member_is_served_through_the_file_permissions(daemon_factory: Any) -> None:
    """A different uid that is a member of `daemon.socket_group` passes the 0750 directory, the
    0660 socket and SO_PEERCRED: what a sysadmin in the `wasupd` group relies on."""
    group = grp.getgrnam("users")  # present on every Debian system
    d = daemon_factory(daemon={"socket_group": group.gr_name})
    os.chmod(d.root, 0o755)  # the test's temp root; /run is world-searchable
    assert os.stat(d.socket).st_gid == group.gr_gid
    assert os.stat(d.socket.parent).st_gid == group.gr_gid
    script = (
        'use IO::Socket::UNIX; my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!";'
        ' print $s qq({"jsonrpc":"2.0","id":1,"method":"daemon.status"}\\n); print scalar <$s>;'
    )
    member = ["setpriv", "--reuid=65534", "--regid=65534", f"--groups={group.gr_gid}"]
    out = subprocess.run(
        [*member, "perl", "-e", script, str(d.socket)], capture_output=True, timeout=30, text=True
    )
    assert out.stdout, out.stderr
    assert json.loads(out.stdout)["result"]["pid"] == d.proc.pid  # type: ignore[union-attr]
    stranger = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    out = subprocess.run(
        [*stranger, "perl", "-e", script, str(d.socket)], capture_output=True, timeout=30, text=True
    )
    assert "Permission denied" in out.stderr  # stopped by the directory's mode already
