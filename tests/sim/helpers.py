"""Driving the simulator's page with real headless Chromium through pyppeteer (no daemon)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pyppeteer
import zxingcpp
from PIL import Image
from pyppeteer.errors import NetworkError

from wasupd.sim import SimServer

CHROMIUM = "/usr/bin/chromium"
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--disable-gpu",
]
SOCKET = "window.require('WAWebSocketModel').Socket"
QR_ON_SCREEN = f"{SOCKET}.state === 'UNPAIRED' && !!document.querySelector('div[data-ref] canvas')"

# Attached before the page's own scripts run: records Socket/Conn/Cmd/Msg events in order, as
# `[name, value, ms since the document started]`, and checks the (model, value) signature.
RECORDER = """() => {
  window.__rec = [];
  const push = (k, v) => window.__rec.push([k, v, Math.round(performance.now())]);
  const iv = setInterval(() => {
    if (!window.Debug || typeof window.require !== 'function') return;
    clearInterval(iv);
    const R = window.require, S = R('WAWebSocketModel').Socket, Conn = R('WAWebConnModel').Conn;
    const progress = () => R('WAWebOfflineHandler').OfflineMessageHandler.getOfflineDeliveryProgress();
    push('state', S.state);
    S.on('change:state', (m, v) => push(m === S ? 'state' : 'bad-model', v));
    S.on('change:hasSynced', (m, v) => push(m === S ? 'hasSynced' : 'bad-model', v));
    Conn.on('change:ref', (m, v) => push(m === Conn ? 'ref' : 'bad-model', v));
    const Cmd = R('WAWebCmd').Cmd;
    for (const e of ['logout', 'logout_from_bridge', 'main_loaded']) Cmd.on(e, () => push(e, true));
    Cmd.on('offline_progress_update_from_bridge', () => push('progress', progress()));
    const Msg = R('WAWebCollections').Msg;
    Msg.on('add', (m) => push('add', m.serialize()));
    Msg.on('change:ack', (m, a) => push('ack', [m.id.id, a]));
  }, 2);
}"""


async def launch(profile: Path, *, extra: tuple[str, ...] = ()) -> Any:
    """A headless Chromium on `profile` (its --user-data-dir); close it with `close()`."""
    profile.mkdir(parents=True, exist_ok=True)
    async with asyncio.timeout(30):
        return await pyppeteer.launch(
            executablePath=CHROMIUM,
            headless=True,
            userDataDir=str(profile),
            args=[*ARGS, *extra],
            autoClose=False,
            handleSIGINT=False,
            handleSIGTERM=False,
            handleSIGHUP=False,
        )


def profile_processes(profile: Path) -> list[psutil.Process]:
    """Live processes whose --user-data-dir is `profile`."""
    marker = f"--user-data-dir={profile}"
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and marker in (
                proc.info["cmdline"] or []
            ):
                found.append(proc)
    return found


async def close(browser: Any, profile: Path, timeout: float = 10.0) -> None:
    """Browser.close, then SIGKILL whatever of the tree is left, and reap it."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout):
            await browser.close()
    proc = browser.process
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    await asyncio.to_thread(proc.wait, 10)
    for stray in profile_processes(profile):
        with contextlib.suppress(psutil.Error):
            stray.kill()
    gone = await asyncio.to_thread(psutil.wait_procs, profile_processes(profile), 10)
    assert not gone[1], f"browser processes survived: {gone[1]}"


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Any]:
    """`async with chromium(dir) as browser:` closed and reaped however the block ends."""
    browser = await launch(profile)
    try:
        yield browser
    finally:
        await close(browser, profile)


async def new_page(browser: Any, *, incognito: bool = True, record: bool = True) -> Any:
    """A page in a fresh incognito context (its own IndexedDB: a fresh profile)."""
    async with asyncio.timeout(15):
        if incognito:
            context = await browser.createIncognitoBrowserContext()
            page = await context.newPage()
        else:
            page = (await browser.pages())[0]
        if record:
            await page.evaluateOnNewDocument(RECORDER)
        return page


async def ev(page: Any, js: str, *args: Any, timeout: float = 10.0) -> Any:
    """`page.evaluate` bounded by `timeout`."""
    async with asyncio.timeout(timeout):
        return await page.evaluate(js, *args)


async def until(page: Any, js: str, timeout: float = 15.0) -> Any:
    """Evaluate the expression `js` until truthy (errors count as false; survives navigations)."""
    fn = f"() => {{ try {{ const v = ({js}); return v instanceof Node ? true : v; }} catch (e) {{ return null; }} }}"
    return await until_async(page, fn, timeout, what=js)


async def until_async(page: Any, fn: str, timeout: float = 15.0, *, what: str = "") -> Any:
    """Call the (possibly async) page function `fn` until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        with contextlib.suppress(NetworkError, TimeoutError):
            value = await ev(page, fn, timeout=max(0.5, deadline - loop.time()))
            if value:
                return value
        assert loop.time() < deadline, f"timed out after {timeout} s waiting for {what or fn}"
        await asyncio.sleep(0.02)  # polling the page: the bound above is what matters


async def goto(page: Any, url: str) -> None:
    """Open `url` (bounded)."""
    async with asyncio.timeout(20):
        await page.goto(url)


async def qr_payload(page: Any) -> str:
    """The full QR payload from `div[data-ref]` once a QR is on screen."""
    await until(page, QR_ON_SCREEN)
    return str(
        await ev(page, "() => document.querySelector('div[data-ref]').getAttribute('data-ref')")
    )


async def decode_canvas(page: Any) -> list[str]:
    """Screenshot the QR canvas over CDP and decode it with zxing-cpp."""
    async with asyncio.timeout(15):
        png = await (await page.querySelector("div[data-ref] canvas")).screenshot()
    return [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


async def link(sim: SimServer, page: Any, phone: str) -> None:
    """Open the page, scan its QR with `phone`'s phone, wait until WhatsApp has synced."""
    await goto(page, sim.url)
    await sim.control("scan", {"payload": await qr_payload(page), "phone": phone})
    await until(page, f"{SOCKET}.hasSynced")


async def recorded(page: Any, name: str) -> list[Any]:
    """Values the recorder saw for `name`, in order."""
    rec = await ev(page, "() => window.__rec")
    return [value for kind, value, _ in rec if kind == name]


SEND_JS = """async (to, body, id) => {
  const R = window.require;
  const wid = R('WAWebWidFactory').createWid(to);
  const { chat } = await R('WAWebFindChatAction').findOrCreateLatestChat(wid);
  const from = R('WAWebUserPrefsMeUser').getMaybeMePnUser();
  const MsgKey = R('WAWebMsgKey');
  const msgId = id || await MsgKey.newId();
  const participant = wid.isGroup() ? from : undefined;
  const key = new MsgKey({ from, to: chat.id, id: msgId, participant, selfDir: 'out' });
  const msg = { id: key, ack: 0, body, from, to: chat.id, local: true, self: 'out',
    t: Math.floor(Date.now() / 1000), isNewMsg: true, type: 'chat',
    ...R('WAWebGetEphemeralFieldsMsgActionsUtils').getEphemeralFields(chat) };
  const [msgPromise, resultPromise] = R('WAWebSendMsgChatAction').addAndSendMsgToChat(chat, msg);
  await msgPromise;
  window.__results = window.__results || {};
  resultPromise.then((r) => { window.__results[msgId] = r; });
  return { key: key._serialized, id: msgId };
}"""


async def send(page: Any, to: str, body: str, msg_id: str = "") -> dict[str, str]:
    """Send like wwebjs does (docs/whatsapp-web.md §4b); the message key and id. The result
    lands in `window.__results[id]` when (if ever) the server answers."""
    return dict(await ev(page, SEND_JS, to, body, msg_id))
