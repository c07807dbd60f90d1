"""End to end, linking: daemon + real Chromium + simulator, driven through `wasupctl`.

Also holds the helpers the other e2e modules of the driver use (`ctl`, `Watch`, `link_by_qr`).
"""

from __future__ import annotations

import codecs
import io
import json
import os
import pty
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image

from tests.helpers.daemon import DaemonProcess
from tests.helpers.sim import SimProcess
from tests.helpers.waiting import eventually
from wasupctl.render import qr_from_text

ALICE, BOB = "15550001111", "15550002222"
CTL = [sys.executable, "-m", "wasupctl.app"]
HALF_BLOCKS = set(" \u2580\u2584\u2588")


def ctl(
    d: DaemonProcess, *args: str, stdin: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """Run `wasupctl --socket ... ARGS` to completion (bounded)."""
    return subprocess.run(
        [*CTL, "--socket", str(d.socket), *args], input=stdin, capture_output=True, timeout=timeout
    )


def popen(d: DaemonProcess, *args: str) -> subprocess.Popen[bytes]:
    """Start `wasupctl --socket ... ARGS` with stdout and stderr piped."""
    return subprocess.Popen(
        [*CTL, "--socket", str(d.socket), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Make sure a wasupctl we started is gone and its pipes closed."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def state(d: DaemonProcess, name: str) -> str:
    """The session's current state."""
    return str(d.call("session.get", name=name, history=0)["state"])


def history(d: DaemonProcess, name: str, n: int = 50) -> list[dict[str, Any]]:
    """The session's latest transitions."""
    return list(d.call("session.get", name=name, history=n)["history"])


def start(daemon_factory: Any, sim: SimProcess, **sections: dict[str, Any]) -> DaemonProcess:
    """A daemon whose browsers open the simulator."""
    browser = {"url": sim.url, **sections.pop("browser", {})}
    d: DaemonProcess = daemon_factory(browser=browser, **sections)
    return d


class Watch:
    """An `events.subscribe` connection; `until(pred)` reads events until one matches."""

    def __init__(self, d: DaemonProcess, **filters: Any) -> None:
        self.client = d.client()
        self.client.__enter__()
        self.client.call("events.subscribe", **filters)
        self.seen: list[dict[str, Any]] = []

    def until(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        """The first event (seen before or arriving within `timeout`) for which `pred` holds."""
        for event in self.seen:
            if pred(event):
                return event
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            new = self.client.next_event(left)
            if new is None:
                break
            self.seen.append(new)
            if pred(new):
                return new
        raise AssertionError(
            f"no {what} within {timeout} s; saw {[e.get('type') for e in self.seen]}"
        )

    def state(self, name: str, to: str, timeout: float = 30) -> dict[str, Any]:
        """Wait for session `name` entering state `to`."""
        return self.until(
            lambda e: e["type"] == "state" and e["session"] == name and e["to"] == to,
            timeout,
            f"{name} -> {to}",
        )

    def close(self) -> None:
        self.client.__exit__(None, None, None)


def decode_png(png: bytes) -> str:
    """The text of the QR code in a PNG (zxing-cpp, as a phone's camera would)."""
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert found, "the PNG QR did not decode"
    return str(found[0].text)


def decode_terminal(lines: list[str]) -> str:
    """Decode a half-block QR as printed in the terminal (rendered at 6 px per module)."""
    matrix = qr_from_text("\n".join(lines))
    scale = 6
    img = Image.new("L", (len(matrix[0]) * scale, len(matrix) * scale), 255)
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                img.paste(0, (x * scale, y * scale, (x + 1) * scale, (y + 1) * scale))
    found = zxingcpp.read_barcodes(img)
    assert found, "the terminal QR did not decode"
    return str(found[0].text)


def link_by_qr(d: DaemonProcess, sim: SimProcess, name: str, phone: str, tmp: Path) -> str:
    """Create the session, decode the PNG of `wasupctl qr`, scan it with the simulated phone;
    returns the payload once the session is connected."""
    w = Watch(d, sessions=[name], types=["state"])
    try:
        out = ctl(d, "session", "create", name, "--no-wait")
        assert out.returncode == 0, out.stderr
        png = tmp / f"{name}.png"
        for _ in range(5):  # on a busy machine the ref may rotate before the phone scans it
            out = ctl(d, "qr", name, "--format", "png", "-o", str(png), "--wait", "30")
            assert out.returncode == 0, out.stderr
            payload = decode_png(png.read_bytes())
            try:
                sim.call("scan", payload=payload, phone=phone)
                break
            except RuntimeError as exc:
                assert "expired" in str(exc), exc
        w.state(name, "connected")
    finally:
        w.close()
    return payload


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Lines:
    """A subprocess's output (a pipe or a pty) read in a thread, so every read is bounded.

    Terminal codes are stripped and carriage returns split lines, as a person would see them.
    """

    def __init__(self, fd: int) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.all: list[str] = []
        self.thread = threading.Thread(target=self._pump, args=(fd,), daemon=True)
        self.thread.start()

    def _pump(self, fd: int) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")()
        pending = ""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # a pty whose child exited
                chunk = b""
            pending += decoder.decode(chunk, final=not chunk)
            *done, pending = re.split(r"\r\n|\n|\r", pending)
            for line in done:  # whole lines only: a chunk may end inside an escape code
                self.queue.put(ANSI.sub("", line))
            if not chunk:
                if pending:
                    self.queue.put(ANSI.sub("", pending))
                self.queue.put(None)
                return

    def next(self, timeout: float) -> str | None:
        """The next line; None at end of output. AssertionError after `timeout`."""
        try:
            line = self.queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout} s; so far {self.all[-5:]}") from None
        if line is not None:
            self.all.append(line)
        return line

    def rest(self, timeout: float) -> str:
        """Everything until the end of output, as text."""
        while self.next(timeout) is not None:
            pass
        return "\n".join(self.all)

    def qr_block(self, timeout: float) -> list[str]:
        """The next QR drawn in half blocks (consecutive lines of only those glyphs)."""
        block: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.next(max(0.1, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"output ended before a QR; got {self.all[-5:]}")
            if line and set(line) <= HALF_BLOCKS:
                block.append(line)
            elif block:
                return block


def on_terminal(d: DaemonProcess, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start wasupctl with its stdout on a pseudo-terminal (as a person runs it); the process
    and the pty's reading end (close it after reaping the process)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*CTL, "--socket", str(d.socket), *args],
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(slave)
    return proc, master


# -- tests ----------------------------------------------------------------------------------


def test_create_shows_terminal_qr_rerenders_and_exits_when_linked(
    daemon_factory: Any, sim_factory: Any
) -> None:
    """On a terminal, `session create` prints a QR that scans from its half-block text and fits
    80 columns, re-renders it with a countdown when it rotates, and exits 0 once linked."""
    sim = sim_factory(time_factor=0.03, accounts=[ALICE])
    d = start(daemon_factory, sim, qr={"max_rotations": 3})
    proc, master = on_terminal(d, "session", "create", "live", "--wait-timeout", "60")
    try:
        out = Lines(master)
        first = out.qr_block(30)
        assert max(len(line) for line in first) <= 80 and len(first) <= 40
        assert decode_terminal(first).startswith("2@")
        for _ in range(20):  # a ref lives 0.6 s here: scan the newest drawing, retry if stale
            block = out.qr_block(15)
            try:
                payload = decode_terminal(block)
            except AssertionError:
                continue  # a drawing cut short by the next rotation (the first one decoded)
            try:
                sim.call("scan", payload=payload, phone=ALICE)
                break
            except RuntimeError as exc:
                assert "expired" in str(exc) or "not recognised" in str(exc)
        else:
            raise AssertionError("never scanned a current QR")
        text = out.rest(30)
        assert proc.wait(30) == 0
    finally:
        reap(proc)
        os.close(master)
    assert re.search(r"QR 2: expires in +\d+ s", text), text[-500:]
    assert "linked and connected" in text
    assert state(d, "live") == "connected"


def test_qr_formats_and_link_by_png(daemon_factory: Any, sim_factory: Any, tmp_path: Path) -> None:
    """`wasupctl qr` gives the same payload as raw text, terminal half blocks, SVG and PNG; the
    PNG decoded with zxing-cpp links the session when the simulated phone scans it."""
    sim = sim_factory(time_factor=0.5, accounts=[ALICE])
    d = start(daemon_factory, sim)
    assert ctl(d, "session", "create", "fmt", "--no-wait").returncode == 0
    raw = ctl(d, "qr", "fmt", "--format", "raw", "--wait", "30")
    assert raw.returncode == 0, raw.stderr
    payload = raw.stdout.decode().strip()
    assert payload.startswith("2@") and payload.count(",") == 4
    term = ctl(d, "qr", "fmt").stdout.decode().splitlines()
    assert decode_terminal([line for line in term if line]) == payload
    svg = ctl(d, "qr", "fmt", "--format", "svg").stdout
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    png = tmp_path / "fmt.png"
    assert ctl(d, "qr", "fmt", "--format", "png", "-o", str(png)).returncode == 0
    assert decode_png(png.read_bytes()) == payload
    info = json.loads(ctl(d, "--json", "qr", "fmt").stdout)
    assert info["rotation"] == 0 and 50 < info["expires_at"] - time.time() <= 60
    w = Watch(d, sessions=["fmt"], types=["state"])
    try:
        sim.call("scan", payload=decode_png(png.read_bytes()), phone=ALICE)
        w.state("fmt", "connected")
    finally:
        w.close()
    out = ctl(d, "qr", "fmt", "--wait", "0")
    assert out.returncode == 5 and b"already linked" in out.stderr


def test_pair_by_code(daemon_factory: Any, sim_factory: Any) -> None:
    """`wasupctl pair NAME --phone N` prints the 8-character code as 4+4 and, once the phone
    typed it, exits 0 with the session connected; no QR was scanned."""
    sim = sim_factory(accounts=[ALICE])
    d = start(daemon_factory, sim)
    w = Watch(d, sessions=["code"], types=["state"])
    try:
        assert ctl(d, "session", "create", "code", "--no-wait").returncode == 0
        w.state("code", "qr")
        proc = popen(d, "pair", "code", "--phone", "+1 555-000-1111", "--wait-timeout", "60")
        try:
            assert proc.stdout is not None
            line = Lines(proc.stdout.fileno()).next(30) or ""
            assert line.startswith("pairing code for code: ")
            code = line.rsplit(" ", 1)[1]
            assert len(code) == 9 and code[4] == "-"
            assert set(code.replace("-", "")) <= set("123456789ABCDEFGHJKLMNPQRSTVWXYZ")
            sim.call("enter_code", code=code, phone=ALICE)
            assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
        finally:
            reap(proc)
        w.state("code", "connected")
    finally:
        w.close()


def test_restart_restores_without_new_qr(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """After a daemon restart the session comes back connected from its sealed profile: no QR
    is offered, and the phone still has exactly one linked device."""
    sim = sim_factory(accounts=[ALICE])
    d = start(daemon_factory, sim)
    link_by_qr(d, sim, "keep", ALICE, tmp_path)
    eventually(lambda: (d.state_dir / "profiles" / "keep.wasup").exists(), 15, "sealed archive")
    assert d.stop() == 0
    d.start()
    w = Watch(d, sessions=["keep"])
    try:
        w.state("keep", "connected")
        assert not [e for e in w.seen if e["type"] == "qr" or e.get("to") == "qr"]
    finally:
        w.close()
    assert sim.call("devices", phone=ALICE) and len(sim.call("devices", phone=ALICE)) == 1


def test_remote_logout_wipes_profile_after_browser_exit(
    daemon_factory: Any, sim_factory: Any, tmp_path: Path
) -> None:
    """The phone unlinking the device ends in logged_out through stopping (the browser is gone
    first), with the archive and the live profile wiped; health says CRITICAL (exit 2)."""
    sim = sim_factory(accounts=[ALICE])
    d = start(daemon_factory, sim)
    link_by_qr(d, sim, "bye", ALICE, tmp_path)
    eventually(lambda: (d.state_dir / "profiles" / "bye.wasup").exists(), 15, "sealed archive")
    w = Watch(d, sessions=["bye"], types=["state"])
    try:
        sim.call("logout", phone=ALICE)
        w.state("bye", "logged_out")
        assert [e["to"] for e in w.seen][-2:] == ["stopping", "logged_out"]
        assert "logged out by the phone" in w.seen[-1]["reason"]
    finally:
        w.close()
    assert not (d.state_dir / "profiles" / "bye.wasup").exists()
    assert not (d.runtime_dir / "profiles" / "bye").exists()
    out = ctl(d, "health", "bye")
    assert out.returncode == 2 and out.stdout.startswith(b"CRITICAL")


def test_qr_never_scanned_fails_after_configured_rotations(
    daemon_factory: Any, sim_factory: Any
) -> None:
    """Nobody scans: each generation's refs rotate, the QR is renewed qr.max_rotations times,
    then the session fails "QR not scanned" and `session create` exits 1 saying so."""
    sim = sim_factory(time_factor=0.01, accounts=[ALICE])
    d = start(daemon_factory, sim, qr={"max_rotations": 2})
    w = Watch(d, sessions=["lonely"])
    try:
        out = ctl(d, "session", "create", "lonely", "--wait-timeout", "60", timeout=90)
        assert out.returncode == 1 and b"QR not scanned" in out.stderr
        w.state("lonely", "failed")
        rotations = [e["rotation"] for e in w.seen if e["type"] == "qr"]
        assert rotations == [0, 1, 2, 3, 4, 5] * 3  # 6 refs per generation, 1 + 2 generations
    finally:
        w.close()
    assert "QR not scanned" in d.call("session.get", name="lonely", history=0)["reason"]


def test_qr_generations_per_hour_are_limited(daemon_factory: Any, sim_factory: Any) -> None:
    """A loop of QR generations stops at qr.max_per_hour: the session fails with the limit as
    its reason and a new start is refused with RateLimited until the hour has passed."""
    sim = sim_factory(time_factor=0.01, accounts=[ALICE])
    d = start(daemon_factory, sim, qr={"max_rotations": 10, "max_per_hour": 2})
    w = Watch(d, sessions=["loop"])
    try:
        assert ctl(d, "session", "create", "loop", "--no-wait").returncode == 0
        failed = w.state("loop", "failed", timeout=60)
        assert "QR limit: 2 generations in the last hour" in failed["reason"]
        # The third generation is refused at its first ref, before it is shown to anyone.
        rotations = [e["rotation"] for e in w.seen if e["type"] == "qr"]
        assert rotations.count(0) == 2 and rotations[-1] == 5, rotations
    finally:
        w.close()
    out = ctl(d, "session", "start", "loop")
    assert out.returncode != 0 and b"QR limit" in out.stderr


@pytest.mark.parametrize(
    ("fault", "expect", "words"),
    [("tos_block", "failed", "banned"), ("deprecated_version", "failed", "version")],
)
def test_refusals_fail_with_reason(
    daemon_factory: Any, sim_factory: Any, fault: str, expect: str, words: str
) -> None:
    """TOS_BLOCK and DEPRECATED_VERSION fail the session with the WhatsApp state and what to do;
    health reports CRITICAL."""
    sim = sim_factory(accounts=[ALICE])
    d = start(daemon_factory, sim)
    sim.call("fault", kind=fault)
    w = Watch(d, sessions=["blocked"], types=["state"])
    try:
        assert ctl(d, "session", "create", "blocked", "--no-wait").returncode == 0
        reason = w.state("blocked", expect)["reason"]
    finally:
        w.close()
    assert fault.upper() in reason and words in reason
    assert ctl(d, "health", "blocked").returncode == 2
