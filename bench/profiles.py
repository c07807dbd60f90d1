"""Profile storage benchmark (docs/profiles.md "Measured"): on a real Chromium profile after a
simulated day of traffic, and on a synthetic incompressible payload:

  1. sizes: live profile (caches included) against the essential files and the sealed archive,
     for chunk sizes x compression levels;
  2. throughput of seal and unseal beside raw AES-256-GCM over the same bytes in the same run,
     and beside the floor for any sealer (read the files + AES-256-GCM, no format): without
     I/O (the format's own cost), to tmpfs, and to disk with fsync;
  3. what a checkpoint costs a running session: the daemon's event-loop lag, the page's timer gap
     and the commit latency of messages arriving meanwhile, for a quiet and a busy page.

    python bench/profiles.py [--messages 8000] [--synthetic-mib 64] [--checkpoints 5]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import exit_on_sigterm
from wasupd.profiles import archive
from wasupd.profiles.fsutil import tree_size
from wasupd.profiles.keys import generate_key_file, keyring_loader, load_keyring
from wasupd.profiles.lifecycle import SealedProfiles
from wasupd.profiles.selection import CACHE_DIRS, essential_files
from wasupd.supervision.launcher import build_args, find_executable
from wasupd.supervision.process import ChromiumHandle, ChromiumLauncher
from wasupd.supervision.seams import LaunchRequest

PHRASES = (
    "ok see you tomorrow at the office",
    "send me the file please thanks a lot",
    "good morning how are you doing",
    "call me when you can the meeting moved to three pm",
    "lunch today sounds great invoice attached pay by friday",
    "happy birthday congrats on the new job where are you now",
)
WORDS = [word for phrase in PHRASES for word in phrase.split()]

PAGE = """<!doctype html><html><body>%(scripts)s<script>
const WORDS = %(words)s;
let handle;
function db() {
  return handle ||= new Promise((res, rej) => {
    const r = indexedDB.open("model-storage", 1);
    r.onupgradeneeded = () => { for (const s of ["message", "chat", "contact", "thumb"]) r.result.createObjectStore(s); };
    r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error);
  });
}
async function put(store, pairs) {
  const d = await db();
  return new Promise((res, rej) => {
    const tx = d.transaction(store, "readwrite");
    for (const [k, v] of pairs) tx.objectStore(store).put(v, k);
    tx.oncomplete = () => res(true); tx.onerror = () => rej(tx.error);
  });
}
const hex = (n) => Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, "0")).join("");
const b64 = (n) => btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(n))));
let seq = 0;
function message() {
  const chat = "1555" + String(seq %% 120).padStart(7, "0") + "@c.us";
  const body = Array.from({length: 3 + (seq %% 25)}, (_, i) => WORDS[(seq * 7 + i * 13) %% WORDS.length]).join(" ");
  const id = "3EB0" + hex(8).toUpperCase();
  seq++;
  return [id, {id: {fromMe: seq %% 2 === 0, remote: chat, id, _serialized: `true_${chat}_${id}`}, type: "chat",
    t: 1700000000 + seq * 9, from: chat, to: "15550001111@c.us", body, ack: 3, star: false, isForwarded: false,
    mentionedJidList: [], links: [], ephemeralDuration: 0}];
}
async function day(n, thumbs) {
  for (let i = 0; i < n; i += 200) await put("message", Array.from({length: Math.min(200, n - i)}, message));
  for (let i = 0; i < thumbs; i += 20) await put("thumb", Array.from({length: 20}, () => [hex(8), b64(6000 + (seq %% 9000))]));
  await put("contact", Array.from({length: 400}, (_, i) => ["1555" + String(i).padStart(7, "0") + "@c.us", {name: WORDS[i %% WORDS.length] + " " + i, pushname: WORDS[(i * 3) %% WORDS.length]}]));
  await put("chat", Array.from({length: 120}, (_, i) => ["1555" + String(i).padStart(7, "0") + "@c.us", {unreadCount: i %% 4, t: 1700000000 + i}]));
  localStorage.setItem("WABrowserId", JSON.stringify(hex(10)));
  localStorage.setItem("WASecretBundle", JSON.stringify({key: b64(32), encKey: b64(32), macKey: b64(32)}));
  return seq;
}
window.gap = 0; window.commit = 0; window.stopTraffic = true;
let last = performance.now();
setInterval(() => { const n = performance.now(); window.gap = Math.max(window.gap, n - last - 5); last = n; }, 5);
async function traffic(everyMs) {  // messages arriving: commit latency is what a checkpoint could delay
  window.stopTraffic = false;
  while (!window.stopTraffic) {
    const t0 = performance.now(); await put("message", [message()]);
    window.commit = Math.max(window.commit, performance.now() - t0);
    if (everyMs) await new Promise((r) => setTimeout(r, everyMs));
  }
}
async function ready() { await navigator.serviceWorker.register("/sw.js"); await navigator.serviceWorker.ready; return true; }
</script></body></html>"""

SW = """const FILES = %(files)s;
self.addEventListener("install", (e) => e.waitUntil(caches.open("app").then((c) => c.addAll(FILES))));
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));
self.addEventListener("fetch", () => {});"""


def app_files() -> dict[str, bytes]:
    """The 'app' the page loads and its service worker caches (five JS-like files, ~9 MB)."""
    noise = os.urandom(1 << 15).hex()
    return {
        f"/app/{i}.js": "".join(
            f"function f{i}_{n}(a,b){{return a*{n}+b;}} // {noise[n % 8000 : n % 8000 + 40]}\n"
            for n in range(24000)
        ).encode()
        for i in range(5)
    }


async def serve(files: dict[str, bytes]) -> tuple[web.AppRunner, str]:
    scripts = "".join(f'<script src="{name}"></script>' for name in files)
    page = PAGE % {"scripts": scripts, "words": repr(WORDS).replace("'", '"')}
    worker = SW % {"files": repr(list(files)).replace("'", '"')}

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def sw(_: web.Request) -> web.Response:
        return web.Response(text=worker, content_type="text/javascript")

    async def asset(request: web.Request) -> web.Response:
        return web.Response(
            body=files[request.path],
            content_type="text/javascript",
            headers={"Cache-Control": "max-age=86400"},
        )

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/sw.js", sw)
    for name in files:
        app.router.add_get(name, asset)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/"


async def launch(profile: Path, logs: Path) -> ChromiumHandle:
    """The daemon's launcher and flags."""
    return await ChromiumLauncher(logs).launch(
        LaunchRequest(
            session="bench",
            profile_dir=profile,
            executable=find_executable("", "full"),
            args=build_args(build="full", profile_dir=profile, user_agent=""),
            url="",
            user_agent="",
            start_timeout=60,
        )
    )


def best(fn: Callable[[], object], runs: int = 3, min_seconds: float = 0.5) -> float:
    """The fastest of at least `runs` timings spread over `min_seconds` (the least disturbed by
    other work on the machine), in seconds."""
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < runs or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


class Null:
    """A binary sink: the format's cost without any I/O."""

    def write(self, data: Any) -> int:
        return len(data)


def read_and_encrypt(paths: list[Path], key: bytes) -> None:
    """The floor for sealing these files: read each from the page cache into one reused
    buffer and run AES-256-GCM over the stream in 1 MiB chunks, with no format at all."""
    block = memoryview(bytearray(128 << 10))
    out = memoryview(bytearray((1 << 20) + (128 << 10)))
    aes, enc, done = algorithms.AES(key), None, 0
    for path in paths:
        with open(path, "rb", buffering=0) as fh:
            while n := fh.readinto(block):
                if enc is None or done >= 1 << 20:
                    if enc is not None:
                        enc.finalize()
                    enc, done = Cipher(aes, modes.GCM(bytes(12))).encryptor(), 0
                done += enc.update_into(block[:n], out)
    if enc is not None:
        enc.finalize()


def throughput(
    label: str, src: Path, ring: Any, shm: Path, disk: Path
) -> list[tuple[str, float, float, float]]:
    """(what, MB/s, time against raw in memory, time against the read + GCM floor) for seal and
    unseal of `src`'s essential files."""
    files = list(essential_files(src))
    blob = b"".join((src / f).read_bytes() for f in files)
    mb = len(blob) / 1e6
    aead, nonce, view = AESGCM(ring.current), os.urandom(12), memoryview(blob)

    def raw() -> None:
        for i in range(0, len(blob), 1 << 20):
            aead.encrypt(nonce, view[i : i + (1 << 20)], b"")

    def unseal_shm() -> None:
        shutil.rmtree(shm / "out", ignore_errors=True)
        archive.unseal(shm / "a.wasup", shm / "out", ring, "s")

    t_raw = best(raw)
    t_floor = best(lambda: read_and_encrypt([src / f for f in files], ring.current))
    rows = [
        (f"{label}: raw AES-256-GCM, in memory ({mb:.0f} MB)", mb / t_raw, 1.0, t_raw / t_floor),
        (f"{label}: read the files + AES-256-GCM", mb / t_floor, t_floor / t_raw, 1.0),
    ]
    runs = {
        "seal, no I/O (records + zlib + GCM)": lambda: archive.seal_to(
            Null(), src, ring, "s", files=files
        ),
        "seal to tmpfs": lambda: archive.seal_dir(src, shm / "a.wasup", ring, "s", files=files),
        "seal to disk, fsync": lambda: archive.seal_dir(
            src, disk / "a.wasup", ring, "s", files=files
        ),
        "verify (decrypt + parse, no writes)": lambda: archive.verify(shm / "a.wasup", ring, "s"),
        "unseal to tmpfs": unseal_shm,
    }
    for what, fn in runs.items():
        t = best(fn)
        rows.append((f"{label}: {what}", mb / t, t / t_raw, t / t_floor))
    return rows


def size_matrix(src: Path, ring: Any, shm: Path) -> list[tuple[int, int, int, float]]:
    """(chunk KiB, level, archive bytes, seal MB/s without I/O) for the day profile."""
    files = list(essential_files(src))
    mb = sum((src / f).stat().st_size for f in files) / 1e6
    out = []
    for chunk in (256 << 10, 1 << 20, 4 << 20):
        for level in (0, 1, 6):
            seal = functools.partial(
                archive.seal_to, Null(), src, ring, "s", files=files, level=level, chunk_size=chunk
            )
            t = best(seal, 2)
            size = archive.seal_dir(
                src, shm / "m.wasup", ring, "s", files=files, level=level, chunk_size=chunk
            )
            out.append((chunk >> 10, level, size, mb / t))
    return out


async def loop_lag(stop: asyncio.Event) -> float:
    """The worst lateness (ms) of a 5 ms sleep on this event loop until `stop` is set."""
    worst = 0.0
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(0.005)
        worst = max(worst, (time.perf_counter() - t0 - 0.005) * 1000)
    return worst


async def measure(page: Any, work: Callable[[], Any]) -> dict[str, float]:
    """Run `work` while probing the event loop and the page; what it cost each."""
    await page.evaluate("() => { window.gap = 0; window.commit = 0; }")
    stop = asyncio.Event()
    probe = asyncio.ensure_future(loop_lag(stop))
    t0 = time.perf_counter()
    await work()
    took = time.perf_counter() - t0
    stop.set()
    lag = await probe
    page_gap, commit = await page.evaluate("() => [window.gap, window.commit]")
    return {"seconds": took, "loop_ms": lag, "page_gap_ms": page_gap, "commit_ms": commit}


async def checkpoints(hooks: SealedProfiles, page: Any, n: int) -> list[dict[str, float]]:
    """A baseline second without checkpoint, then `n` checkpoints while the page works."""
    rows = [await measure(page, lambda: asyncio.sleep(1.0))]
    rows[0]["pause_ms"] = 0.0
    for _ in range(n):
        row = await measure(page, hooks.checkpoint)
        row["pause_ms"] = hooks.last_checkpoint.longest_pause * 1000
        rows.append(row)
        await asyncio.sleep(0.3)
    return rows


async def main_async(args: argparse.Namespace) -> None:
    shm_base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    root = Path(tempfile.mkdtemp(prefix="wasupd-bench-"))
    shm = Path(tempfile.mkdtemp(prefix="wasupd-bench-", dir=shm_base))
    runner, url = await serve(app_files())
    try:
        generate_key_file(root / "profile.key")
        ring = load_keyring(root / "profile.key")
        hooks = SealedProfiles(
            "bench",
            archive_path=root / "state" / "bench.wasup",
            live_dir=shm / "run" / "bench",
            keyring_loader=keyring_loader(root / "profile.key"),
            quota_mib=0,  # measure the profile as it grows; pruning is tested elsewhere
        )
        live = await hooks.prepare()
        t0 = time.perf_counter()
        handle = await launch(live, root / "logs")
        try:
            await handle.page.goto(url)
            await handle.page.evaluate("() => ready()")
            count = await handle.page.evaluate(f"() => day({args.messages}, {args.messages // 25})")
        finally:
            await handle.stop(10)
        print(
            f"simulated day: {count} messages, {args.messages // 25} thumbnails, 400 contacts, an app cached by its service worker ({time.perf_counter() - t0:.1f} s)"
        )

        live_bytes = tree_size(live)
        essential = sum((live / f).stat().st_size for f in essential_files(live))
        caches = sum(tree_size(live / c) for c in CACHE_DIRS)
        sealed = archive.seal_dir(live, root / "state" / "bench.wasup", ring, "bench")
        print("\n## Sizes after a simulated day")
        print(f"{'live profile (everything)':42}{live_bytes / 1e6:>10.1f} MB")
        print(f"{'  of which caches (not sealed)':42}{caches / 1e6:>10.1f} MB")
        print(f"{'essential files (sealed)':42}{essential / 1e6:>10.1f} MB")
        print(
            f"{'archive (1 MiB chunks, zlib level 1)':42}{sealed / 1e6:>10.1f} MB  ({sealed / live_bytes:.0%} of live)"
        )
        print("\n## Chunk size x compression level (day profile)")
        print(f"{'chunk KiB':>10}{'level':>7}{'archive MB':>12}{'seal MB/s (no I/O)':>20}")
        for chunk, level, size, mbps in size_matrix(live, ring, shm):
            print(f"{chunk:>10}{level:>7}{size / 1e6:>12.2f}{mbps:>20.0f}")

        synthetic = root / "synthetic"
        (synthetic / "Default/IndexedDB/db").mkdir(parents=True)
        for i in range(args.synthetic_mib // 4):
            (synthetic / f"Default/IndexedDB/db/{i:06d}.ldb").write_bytes(os.urandom(4 << 20))
        print("\n## Throughput (best of 3)")
        print(f"{'':60}{'MB/s':>8}{'vs raw':>9}{'vs read+GCM':>13}")
        for source, label in (
            (live, "day profile"),
            (synthetic, f"{args.synthetic_mib} MiB incompressible"),
        ):
            for what, mbps, ratio, floor in throughput(label, source, ring, shm, root / "state"):
                print(f"{what:60}{mbps:>8.0f}{ratio:>8.2f}x{floor:>12.2f}x")
        shutil.rmtree(synthetic)

        print("\n## Checkpoints of the running session")
        handle = await launch(live, root / "logs")
        try:
            await handle.page.goto(url)
            for mode, every in (
                ("quiet page: a message every 50 ms", 50),
                ("busy page: messages back to back", 0),
            ):
                await handle.page.evaluate(f"() => {{ traffic({every}); return true; }}")
                await asyncio.sleep(0.5)
                base, *rows = await checkpoints(hooks, handle.page, args.checkpoints)
                await handle.page.evaluate("() => { window.stopTraffic = true; }")
                print(
                    f"{mode}: {len(rows)} checkpoints{'worst':>12}{'median':>9}{'no checkpoint':>15}"
                )
                for key, what in (
                    ("seconds", "checkpoint duration (s)"),
                    ("pause_ms", "browser paused (ms)"),
                    ("loop_ms", "daemon event-loop lag (ms)"),
                    ("page_gap_ms", "page timer delayed (ms)"),
                    ("commit_ms", "message commit latency (ms)"),
                ):
                    values = [r[key] for r in rows]
                    baseline = "" if key in ("seconds", "pause_ms") else f"{base[key]:>15.1f}"
                    print(
                        f"  {what:48}{max(values):>9.1f}{statistics.median(values):>9.1f}{baseline}"
                    )
        finally:
            await handle.stop(10)
        t0 = time.perf_counter()
        await hooks.release(wipe=False)
        print(f"\nstop: sealed and removed the live profile in {time.perf_counter() - t0:.2f} s")
    finally:
        await runner.cleanup()
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--messages", type=int, default=8000, help="messages in the simulated day")
    p.add_argument("--synthetic-mib", type=int, default=64)
    p.add_argument("--checkpoints", type=int, default=5, help="per page mode")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    exit_on_sigterm()
    main()
