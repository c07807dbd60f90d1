"""The DevTools pipe transport: NUL framing over real pipes, large messages, closing, screenshots;
the one-trip evaluate over it."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pyppeteer.errors import ElementHandleError
from websockets.exceptions import ConnectionClosed

from tests.helpers import chromium
from tests.helpers.waiting import eventually_async
from wasupd.devtools import cdp
from wasupd.devtools.pipe import PipeClosed, PipeTransport

# A peer speaking the pipe protocol: reads NUL-framed messages on fd 3, echoes them on fd 4,
# in odd-sized writes so frames arrive split across reads; exits on the message "bye".
ECHO = r"""
import os
buf = bytearray()
while True:
    chunk = os.read(3, 1 << 20)
    if not chunk:
        break
    start = len(buf)
    buf += chunk
    while (end := buf.find(b"\0", start)) >= 0:
        msg = bytes(buf[:end])
        del buf[: end + 1]
        start = 0
        if msg == b"bye":
            raise SystemExit(0)
        out = memoryview(msg + b"\0")
        while out:
            out = out[os.write(4, out[:65521]):]
"""


@pytest.fixture
async def echo_peer() -> AsyncIterator[tuple[PipeTransport, subprocess.Popen[bytes]]]:
    """A transport connected to the echo peer over two real pipes on its fds 3 and 4."""
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", ECHO],
        pass_fds=(3, 4),
        preexec_fn=lambda: (os.dup2(to_r, 3), os.dup2(from_w, 4)),  # noqa: PLW1509
    )
    os.close(to_r)
    os.close(from_w)
    transport = await PipeTransport(to_w, from_r).open()
    try:
        yield transport, proc
    finally:
        await transport.close()
        proc.kill()
        proc.wait()


async def test_messages_round_trip_whole_and_in_order(
    echo_peer: tuple[PipeTransport, subprocess.Popen[bytes]],
) -> None:
    """Small and 16 MiB messages, non-ASCII text included, come back whole and in order."""
    transport, _ = echo_peer
    big = '{"data": "' + "x" * (16 << 20) + '"}'
    sent = ['{"id": 1}', big, '{"text": "olá ✓ 你好"}']
    async with asyncio.timeout(30):
        for msg in sent:
            await transport.send(msg)
        got = [await transport.recv() for _ in sent]
    assert got == sent


async def test_delivery_to_a_sink_keeps_order_and_recv_reports_the_close(
    echo_peer: tuple[PipeTransport, subprocess.Popen[bytes]],
) -> None:
    """After `deliver_to`, messages go to the sink as they are read: those already queued
    first, all in order; `recv()` is left to report the close."""
    transport, proc = echo_peer
    got: list[str] = []
    done = asyncio.Event()

    def sink(message: str) -> None:
        got.append(message)
        if message == "4":
            done.set()

    async with asyncio.timeout(30):
        for i in range(2):
            await transport.send(str(i))
        assert await transport.recv() == "0"
        # "1" is read into the queue before the sink is set.
        await eventually_async(lambda: not transport._queue.empty(), 10, "the second echo")
        transport.deliver_to(sink)
        for i in range(2, 5):
            await transport.send(str(i))
        await done.wait()
        assert got == ["1", "2", "3", "4"]
        await transport.send("bye")
        with pytest.raises(PipeClosed):
            await transport.recv()
    proc.wait(10)


async def test_peer_exit_closes_both_directions(
    echo_peer: tuple[PipeTransport, subprocess.Popen[bytes]],
) -> None:
    """When the peer exits, recv raises PipeClosed (a ConnectionClosed pyppeteer catches, and a
    ConnectionResetError), every time, and send refuses after close."""
    transport, proc = echo_peer
    await transport.send("bye")
    async with asyncio.timeout(10):
        for _ in range(2):
            with pytest.raises(PipeClosed) as info:
                await transport.recv()
            assert isinstance(info.value, ConnectionClosed)
            assert isinstance(info.value, ConnectionResetError)
    assert proc.wait(5) == 0
    await transport.close()
    with pytest.raises(PipeClosed):
        await transport.send("{}")


async def test_unopened_transport_closes_its_fds() -> None:
    """A transport closed before open() still closes the fds it was given (no fd leak)."""
    r, w = os.pipe()
    await PipeTransport(w, r).close()
    for fd in (r, w):
        with pytest.raises(OSError):
            os.fstat(fd)


@pytest.mark.chromium
async def test_large_screenshot_over_the_pipe(tmp_path: Path) -> None:
    """A screenshot of many MB (incompressible noise on a big viewport) arrives intact."""
    h = await chromium.launch(chromium.request(tmp_path / "p", session="shot"))
    try:
        await h.page.setViewport({"width": 1600, "height": 1200})
        await h.page.evaluate(
            """() => {
              const c = document.createElement('canvas'); c.width = 1600; c.height = 1200;
              document.body.style.margin = 0; document.body.appendChild(c);
              const ctx = c.getContext('2d'), img = ctx.createImageData(1600, 1200);
              crypto.getRandomValues(img.data.subarray(0, 65536));
              for (let i = 65536; i < img.data.length; i += 65536)
                crypto.getRandomValues(img.data.subarray(i, i + 65536));
              for (let i = 3; i < img.data.length; i += 4) img.data[i] = 255;
              ctx.putImageData(img, 0, 0);
            }"""
        )
        async with asyncio.timeout(60):
            result = await h.page._client.send("Page.captureScreenshot", {"format": "png"})
        png = base64.b64decode(result["data"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(png) > 5 << 20, len(png)  # 7+ MB of base64 in one pipe message
        await h.ping(5)  # the connection is still in step after the big message
    finally:
        await h.stop(5)


@pytest.mark.chromium
async def test_one_trip_evaluate_answers_as_pyppeteer(tmp_path: Path) -> None:
    """`cdp.evaluate` (one round trip, result by value) gives what pyppeteer's evaluate gives:
    objects, strings, numbers, booleans, undefined, awaited promises, infinities in and out,
    None for a result JSON cannot carry; a JS exception is an `ElementHandleError` with the
    same message."""
    h = await chromium.launch(chromium.request(tmp_path / "p", session="eval"))
    try:
        cases: list[tuple[str, tuple[object, ...]]] = [
            ("(a, b) => ({sum: a + b, list: [a, b], nested: {ok: true}})", (2, 3)),
            ("(s) => s + ' ✓'", ("olá",)),
            ("() => 4.5", ()),
            ("() => false", ()),
            ("() => undefined", ()),
            ("async (x) => { await new Promise(r => setTimeout(r, 10)); return x; }", ("late",)),
            ("(x) => x === Infinity ? -Infinity : 0", (float("inf"),)),
            ("() => document.body", ()),
        ]
        async with asyncio.timeout(30):
            for js, args in cases:
                assert await cdp.evaluate(h.page, js, *args) == await h.page.evaluate(js, *args)
            js = "() => { throw new Error('no such chat'); }"
            with pytest.raises(ElementHandleError) as ours:
                await cdp.evaluate(h.page, js)
            with pytest.raises(ElementHandleError) as theirs:
                await h.page.evaluate(js)
            assert str(ours.value) == str(theirs.value)
            assert "no such chat" in str(ours.value)
    finally:
        await h.stop(5)


@pytest.mark.chromium
async def test_page_has_its_user_agent_and_no_network_events(tmp_path: Path) -> None:
    """The session's page keeps the user agent override after the unused domains are disabled
    again, and loading and fetching in it sends no Network events over the pipe."""
    req = chromium.request(tmp_path / "p", session="quiet", user_agent="wasupd-test-UA")
    h = await chromium.launch(req)
    try:
        events: list[str] = []
        for name in ("requestWillBeSent", "responseReceived", "loadingFinished"):
            h.page._client.on(f"Network.{name}", lambda _e, n=name: events.append(n))
        async with asyncio.timeout(30):
            await h.page.goto("data:text/html,<p>hello</p>", waitUntil="load")
            assert await cdp.evaluate(h.page, "() => navigator.userAgent") == "wasupd-test-UA"
            got = await cdp.evaluate(
                h.page, "async () => (await fetch('data:text/plain,pong')).text()"
            )
            assert got == "pong"
            await h.ping(5)  # anything sent by now has been read
        assert events == []
    finally:
        await h.stop(5)
