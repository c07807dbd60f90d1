"""whatsapp-web.js from npm, a throwaway TLS identity for web.whatsapp.com, and the bot process.

`ensure_wwebjs()` installs the package once per version into a cache outside the repository
(`$XDG_CACHE_HOME/wasupd-tests/`, with `PUPPETEER_SKIP_DOWNLOAD=1`: Chromium is Debian's).
`Bot` runs bot.js under Node and talks to it in JSON lines; `Bot.close()` leaves no process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

WWEBJS_VERSION = os.environ.get("WASUPD_WWEBJS_VERSION", "1.34.7")  # the newest 1.34.x
HOST = "web.whatsapp.com"  # whatsapp-web.js always opens https://web.whatsapp.com/
BOT_JS = Path(__file__).with_name("bot.js")
INSTALL_TIMEOUT_S = 600.0


def cache_dir() -> Path:
    """Where npm packages for the tests live (outside the repository, shared by checkouts)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "wasupd-tests"


def ensure_node() -> tuple[str, str]:
    """Paths of node and npm; installs Debian's nodejs and npm as root, else fails saying how."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if (node is None or npm is None) and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=300)
        cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nodejs", "npm"]
        subprocess.run(cmd, check=True, env=env, timeout=600)
        node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js and npm are missing: run `sudo scripts/system-deps.sh`")
    return node, npm


def ensure_wwebjs(npm: str, version: str = WWEBJS_VERSION) -> Path:
    """The node_modules directory holding whatsapp-web.js `version` (installed on first use)."""
    root = cache_dir()
    target = root / f"whatsapp-web.js-{version}"
    marker = target / "node_modules" / "whatsapp-web.js" / "package.json"
    if _installed(marker, version):
        return target / "node_modules"
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another checkout may be installing the same version
        if not _installed(marker, version):
            staging = Path(tempfile.mkdtemp(prefix="install-", dir=root))
            cmd = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(staging)]
            env = {**os.environ, "PUPPETEER_SKIP_DOWNLOAD": "1"}
            done = subprocess.run(
                [*cmd, f"whatsapp-web.js@{version}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
            if done.returncode != 0:
                shutil.rmtree(staging, ignore_errors=True)
                pytest.fail(
                    f"npm install whatsapp-web.js@{version} failed (needs the npm registry):\n"
                    + done.stderr[-2000:]
                )
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)  # whole or not at all: a killed install is not "installed"
    return target / "node_modules"


def _installed(marker: Path, version: str) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return bool(json.loads(marker.read_text()).get("version") == version)
    return False


@dataclass(frozen=True, slots=True)
class TlsIdentity:
    """A self-signed certificate for web.whatsapp.com and the SPKI pin Chromium accepts."""

    context: ssl.SSLContext
    spki_sha256: str


def make_tls(directory: Path) -> TlsIdentity:
    """A fresh key and certificate in `directory`, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return TlsIdentity(context, base64.b64encode(hashlib.sha256(spki).digest()).decode())


def steering_args(port: int, tls: TlsIdentity) -> list[str]:
    """The two Chromium flags that make https://web.whatsapp.com/ the simulator on
    127.0.0.1:`port` (nothing else: bench/footprint.py adds only these to a documented setup)."""
    return [
        f"--host-resolver-rules=MAP {HOST} 127.0.0.1:{port}",
        f"--ignore-certificate-errors-spki-list={tls.spki_sha256}",
    ]


def chromium_args(port: int, tls: TlsIdentity) -> list[str]:
    """`steering_args` and what a test run needs besides."""
    return [
        *steering_args(port, tls),
        "--no-sandbox",  # the tests may run as root
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ]


class Bot:
    """bot.js under Node: events in order, requests answered by id."""

    def __init__(self, proc: asyncio.subprocess.Process, profile: Path) -> None:
        self.proc, self.profile = proc, profile
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next = 1
        self.seen: list[dict[str, Any]] = []  # every event, for failure messages
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if "event" in line:
                    self.seen.append(line)
                    await self._events.put(line)
                elif (fut := self._answers.pop(line.get("id"), None)) and not fut.done():
                    fut.set_result(line)
        for fut in self._answers.values():
            if not fut.done():
                fut.set_exception(EOFError("bot.js exited"))

    async def event(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """The next event called `name` (earlier ones of other names are skipped); a `fatal`
        event or the timeout is an AssertionError with what was seen."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    ev = await self._events.get()
                    if ev["event"] == name:
                        return ev
                    assert ev["event"] != "fatal", f"whatsapp-web.js failed: {ev['error']}"
        except TimeoutError:
            raise AssertionError(f"no {name!r} event in {timeout} s; saw {self.seen}") from None

    async def request(self, op: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        """Send one request; its answer, `{"result": ...}` or `{"error": "..."}`."""
        assert self.proc.stdin is not None
        rid, self._next = self._next, self._next + 1
        fut = self._answers[rid] = asyncio.get_running_loop().create_future()
        self.proc.stdin.write(json.dumps({"id": rid, "op": op, "args": args}).encode() + b"\n")
        await self.proc.stdin.drain()
        async with asyncio.timeout(timeout):
            return await fut

    async def call(self, op: str, timeout: float = 30.0, **args: Any) -> Any:
        """`request` whose answer must be a result."""
        answer = await self.request(op, timeout, **args)
        assert "error" not in answer, f"{op} failed: {answer['error']}"
        return answer["result"]

    async def close(self) -> None:
        """destroy() the client (closing its Chromium), end Node, then kill and reap leftovers."""
        with contextlib.suppress(Exception):
            await self.request("destroy", timeout=15)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        # puppeteer starts Chromium in a process group of its own: find it by its profile.
        marker = f"--user-data-dir={self.profile}"
        left = [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        await asyncio.to_thread(psutil.wait_procs, left, 10)


@contextlib.asynccontextmanager
async def bot(node: str, modules: Path, args: list[str], profile: Path) -> AsyncIterator[Bot]:
    """`async with bot(...) as b:` bot.js with whatsapp-web.js from `modules`; closed at exit."""
    config = {"chromium": shutil.which("chromium") or "/usr/bin/chromium", "profile": str(profile)}
    env = {
        **os.environ,
        "NODE_PATH": str(modules),
        "WWEBJS_BOT_CONFIG": json.dumps({**config, "args": args}),
    }
    proc = await asyncio.create_subprocess_exec(
        node,
        str(BOT_JS),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        start_new_session=True,  # its own group, so close() can end Node and what it started
        limit=1 << 22,  # QR payloads and messages are single lines
    )
    b = Bot(proc, profile)
    try:
        yield b
    finally:
        await b.close()
