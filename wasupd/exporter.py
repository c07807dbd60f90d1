"""`[metrics] listen`: the Prometheus exposition over HTTP, as every exporter serves it.

`GET /metrics` answers with the same text as `metrics.get` on the control socket; `GET /` names
the path. Off unless `metrics.listen` is set; bind it to loopback or a management network, as
it has no authentication (the figures name sessions, not messages).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from wasupd.config import listen_address
from wasupd.errors import ConfigError

log = structlog.get_logger("wasupd.exporter")


def _app(render: Callable[[], Awaitable[str]]) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=(await render()).encode(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def index(_: web.Request) -> web.Response:
        return web.Response(text="wasupd exporter: metrics are at /metrics\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    return app


@contextlib.asynccontextmanager
async def serving(listen: str, render: Callable[[], Awaitable[str]]) -> AsyncIterator[str]:
    """Serve `render()` at `http://<listen>/metrics` while the context is open; yields the URL.
    `ConfigError` (naming `metrics.listen`) when the address cannot be bound."""
    host, port = listen_address(listen)
    runner = web.AppRunner(_app(render), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                f"metrics.listen {listen}: cannot listen there: {exc.strerror or exc}",
                key="metrics.listen",
            ) from exc
        url = f"http://{listen}/metrics"
        log.info("metrics_listening", url=url)
        yield url
    finally:
        await runner.cleanup()
