"""Real Chromium: a credential stored in IndexedDB survives seal/unseal, and a checkpoint taken while
the page keeps writing restores to a consistent database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp import web

from tests.helpers import chromium
from tests.helpers.waiting import eventually_async
from wasupd.profiles import archive, snapshot
from wasupd.profiles.keys import generate_key_file, keyring_loader, load_keyring
from wasupd.profiles.lifecycle import SealedProfiles
from wasupd.profiles.transfer import export_archive
from wasupd.supervision.process import ChromiumHandle

pytestmark = pytest.mark.chromium

MARKER = "wasupd-credential-5d1e88c0b7"
PAGE = """<!doctype html><html><body><script>
let handle;
function db() {
  return handle ||= new Promise((res, rej) => {
    const r = indexedDB.open("wawc", 1);
    r.onupgradeneeded = () => r.result.createObjectStore("kv");
    r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error);
  });
}
async function put(pairs) {
  const d = await db();
  return new Promise((res, rej) => {
    const tx = d.transaction("kv", "readwrite");
    for (const [k, v] of pairs) tx.objectStore("kv").put(v, k);
    tx.oncomplete = () => res(true); tx.onerror = () => rej(tx.error);
  });
}
async function ask(op, arg) {
  const d = await db();
  return new Promise((res, rej) => {
    const r = d.transaction("kv").objectStore("kv")[op](arg);
    r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error);
  });
}
window.committed = 0;
async function writer() {  // one transaction per record: the record and "last" commit together
  for (;;) { const i = window.committed + 1; await put([["rec" + i, "v".repeat(2000) + i], ["last", i]]); window.committed = i; }
}
</script></body></html>"""


@pytest.fixture
async def page_url() -> AsyncIterator[str]:
    """A loopback page (and a service worker script) on one port for the whole test (one origin)."""

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def worker(_: web.Request) -> web.Response:
        return web.Response(text="self.onfetch = () => {};", content_type="text/javascript")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/sw.js", worker)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


def hooks_for(tmp: Path) -> SealedProfiles:
    key = tmp / "profile.key"
    if not key.exists():
        generate_key_file(key)
    return SealedProfiles(
        "s",
        archive_path=tmp / "state" / "profiles" / "s.wasup",
        live_dir=tmp / "run" / "profiles" / "s",
        keyring_loader=keyring_loader(key),
        quota_mib=100,
    )


async def launch(profile: Path, logs: Path) -> ChromiumHandle:
    """The daemon's own launcher and flags on `profile`."""
    async with asyncio.timeout(60):
        return await chromium.launch(chromium.request(profile, session="s", start_timeout=45), logs)


async def run_in_page(profile: Path, logs: Path, url: str, script: str) -> Any:
    """Start a browser on `profile`, open `url`, evaluate `script`, stop the browser; the result."""
    handle = await launch(profile, logs)
    try:
        async with asyncio.timeout(60):
            await handle.page.goto(url)
            return await handle.page.evaluate(script)
    finally:
        await handle.stop(10)


def files_containing(roots: list[Path], needle: bytes) -> list[Path]:
    return [
        f
        for root in roots
        if root.exists()
        for f in root.rglob("*")
        if f.is_file() and not f.is_symlink() and needle in f.read_bytes()
    ]


async def test_credential_survives_seal_and_restore_and_no_plaintext_remains(
    tmp_path: Path, page_url: str
) -> None:
    """IndexedDB, Local Storage and the service worker come back from the archive alone; after
    release no file in the runtime or state dir holds the credential."""
    hooks = hooks_for(tmp_path)
    live = await hooks.prepare()
    stored = await run_in_page(
        live,
        tmp_path / "logs",
        page_url,
        f"""async () => {{
            localStorage.setItem("WABrowserId", "{MARKER}-ls");
            await put([["creds", "{MARKER}-idb"]]);
            await navigator.serviceWorker.register("/sw.js");
            await navigator.serviceWorker.ready;
            return "stored";
        }}""",
    )
    assert stored == "stored"
    roots = [tmp_path / "run", tmp_path / "state"]
    assert files_containing(roots, MARKER.encode()), "the credential should be in the live profile"
    await hooks.release(wipe=False)
    assert not live.exists()
    assert files_containing(roots, MARKER.encode()) == []
    live = await hooks.prepare()
    found = await run_in_page(
        live,
        tmp_path / "logs",
        page_url,
        """async () => ({
            idb: await ask("get", "creds"),
            ls: localStorage.getItem("WABrowserId"),
            sw: (await navigator.serviceWorker.getRegistrations()).length,
        })""",
    )
    assert found == {"idb": f"{MARKER}-idb", "ls": f"{MARKER}-ls", "sw": 1}
    await hooks.release(wipe=True)


def running(live: Path) -> bool:
    """True when no process of the browser using `live` is stopped (paused and never resumed)."""
    procs = snapshot.profile_processes(live)
    return bool(procs) and all(p.status() != psutil.STATUS_STOPPED for p in procs)


@pytest.mark.parametrize("path", ["optimistic", "paused"])
async def test_checkpoints_taken_while_the_page_writes_restore_consistently(
    tmp_path: Path, page_url: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints of a profile under constant IndexedDB writes (copied while it holds still, or
    forced to pause the browser) each restore to an intact database holding at least everything
    committed before the checkpoint began; a paused browser runs on afterwards."""
    if path == "paused":
        monkeypatch.setattr(snapshot, "QUIET_TRIES", 0)
    hooks = hooks_for(tmp_path)
    live = await hooks.prepare()
    handle = await launch(live, tmp_path / "logs")
    taken: list[tuple[int, Path]] = []
    try:
        async with asyncio.timeout(120):
            await handle.page.goto(page_url)
            await handle.page.evaluate("() => { writer(); return true; }")
            for n in range(2):
                await eventually_async(
                    lambda: handle.page.evaluate("() => window.committed"),
                    120,
                    f"{300 * (n + 1)} commits in the page",
                    ok=lambda count, n=n: count >= 300 * (n + 1),
                )
                before = await handle.page.evaluate("() => window.committed")
                await hooks.checkpoint()
                copy = tmp_path / f"checkpoint{n}.wasup"
                export_archive(hooks.archive_path, copy)
                taken.append((before, copy))
                assert running(live), "the browser must run on after a checkpoint"
            after = await handle.page.evaluate("() => window.committed")
            await eventually_async(
                lambda: handle.page.evaluate("() => window.committed"),
                120,
                "the page to commit on after the checkpoints",
                ok=lambda count: count > after,
            )
    finally:
        await handle.stop(10)
    ring = load_keyring(tmp_path / "profile.key")
    for n, (before, copy) in enumerate(taken):
        restored = tmp_path / f"restored{n}"
        archive.unseal(copy, restored, ring, "s")
        state = await run_in_page(
            restored,
            tmp_path / "logs",
            page_url,
            """async () => {
                const last = await ask("get", "last");
                return {last, count: await ask("count"), tail: await ask("get", "rec" + last)};
            }""",
        )
        last = state.get("last")  # missing when the database came back damaged or empty
        assert last is not None and last >= before, (n, state, before)
        assert state["count"] == last + 1, state  # rec1..rec<last> and "last": nothing torn
        assert state["tail"] == "v" * 2000 + str(last)
    await hooks.release(wipe=True)
