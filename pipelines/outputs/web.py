"""The analyzer's HTTP endpoints (aiohttp, on its event loop): ``/metrics`` (``--metrics``) and the live web
view (``--ui``). Each listens where it is told; a port already taken is a one-line ConfigError at start-up."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from aiohttp import web

from pipelines.config import Address
from streamer.errors import ConfigError

if TYPE_CHECKING:
    from pipelines.outputs.metrics import Metrics
    from pipelines.outputs.webui import LiveView

log = logging.getLogger("streamer")


def metrics_app(metrics: Metrics) -> web.Application:
    async def scrape(request: web.Request) -> web.Response:
        body, content_type = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def index(request: web.Request) -> web.Response:
        return web.Response(text="streamer: metrics at /metrics\n")

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/", index)
    return app


class WebServer:
    """Serves applications until :meth:`close`; :attr:`urls` says where each one listens (port 0: the one
    the system picked)."""

    def __init__(self) -> None:
        self._runners: list[web.AppRunner] = []
        self.urls: dict[str, str] = {}

    async def serve(self, name: str, app: web.Application, where: Address) -> str:
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, where.host, where.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise ConfigError(f"{name} at {where}: cannot listen: {why}") from None
        self._runners.append(runner)
        host, port = runner.addresses[0][:2]
        shown = "localhost" if host in ("127.0.0.1", "::1") else host
        url = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
        self.urls[name] = url
        return url

    async def close(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()


async def start_endpoints(
    server: WebServer, metrics: Metrics | None, view: LiveView | None, metrics_at: Address | None,
    ui_at: Address | None,
) -> None:  # fmt: skip
    if metrics is not None and metrics_at is not None:
        url = await server.serve("metrics", metrics_app(metrics), metrics_at)
        log.warning("metrics at %s/metrics", url)
    if view is not None and ui_at is not None:
        from pipelines.outputs.webui import ui_app

        url = await server.serve("ui", ui_app(view), ui_at)
        log.warning("live view at %s/", url)
