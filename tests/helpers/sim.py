"""The simulator in tests: run it, call its control API, and drive its page in real Chromium.

`SimProcess` / the `sim_factory` fixture run `python -m wasupd.sim` as a subprocess, so blocking
tests (daemon, CLI) can use it. The page helpers drive the simulator's WhatsApp Web page in a
Chromium launched as the daemon launches it (`tests.helpers.chromium`), with a recorder of the
page's model events attached, for the simulator's own tests and anything else that needs a page.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image
from pyppeteer.errors import NetworkError

from tests.helpers import chromium
from tests.helpers.waiting import eventually_async
from wasupd.sim import SimServer


class SimProcess:
    """`python -m wasupd.sim` on a free port, with a blocking control client."""

    def __init__(self, time_factor: float, accounts: list[str], *, lid: bool = False) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wasupd.sim",
                "--port",
                "0",
                "--time-factor",
                str(time_factor),
                "--accounts",
                ",".join(accounts),
                *([] if lid else ["--no-lid"]),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url

    def call(self, action: str, **params: Any) -> Any:
        """One control call; raises RuntimeError with the simulator's message on refusal."""
        req = urllib.request.Request(
            self.url + "_sim/" + action,
            data=json.dumps(params).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())["result"]
        except urllib.error.HTTPError as exc:
            raise RuntimeError(json.loads(exc.read()).get("error")) from None

    def stop(self) -> None:
        """SIGTERM and reap."""
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., SimProcess]]:
    """`sim_factory(time_factor=0.05, accounts=[...], lid=False)`; stopped at teardown.

    The accounts are old-world (`lid=False`: not LID-migrated) unless `lid=True`: the driver
    does not address by LID yet, and its tests predate LIDs."""
    made: list[SimProcess] = []

    def factory(
        time_factor: float = 0.05, accounts: list[str] | None = None, *, lid: bool = False
    ) -> SimProcess:
        s = SimProcess(time_factor, accounts or [], lid=lid)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.stop()


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


@contextlib.asynccontextmanager
async def browser_on(profile: Path) -> AsyncIterator[Any]:
    """`async with browser_on(dir) as browser:` a pyppeteer Browser of a Chromium launched as the
    daemon launches it (`tests.helpers.chromium`) on the profile `dir`; stopped, swept and
    reaped however the block ends. Its first page (`new_page(browser, incognito=False)`) uses
    that profile; incognito pages get a fresh one each."""
    async with chromium.running(chromium.request(profile)) as handle:
        yield handle.browser


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
    """Call the (possibly async) page function `fn` until it returns something truthy (a
    navigation in between counts as not yet)."""
    return await eventually_async(
        lambda: page.evaluate(fn), timeout, what or fn, interval=0.02, ignore=(NetworkError,)
    )


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


async def screenshot(page: Any, path: Path) -> Image.Image:
    """Screenshot `page` into `path` (under the test's tmp_path: the pictures in docs/img are
    made by scripts/screenshots.py, not by tests); the image, checked to be a PNG of the
    page's viewport that is not blank."""
    async with asyncio.timeout(20):
        await page.screenshot(path=str(path))
    image = Image.open(path)
    size = (page.viewport["width"], page.viewport["height"])
    assert image.format == "PNG" and image.size == size, (image.format, image.size, size)
    low, high = image.convert("L").getextrema()
    assert low < high, f"{path.name} is a blank picture"
    return image


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
    """Send like wwebjs does (docs/whatsapp-web.md §4b); the message key and id. The result lands in
    `window.__results[id]` when (if ever) the server answers."""
    return dict(await ev(page, SEND_JS, to, body, msg_id))
