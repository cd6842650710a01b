"""The analyzer's HTTP endpoints (aiohttp, on its event loop): ``/metrics`` (``--metrics``) and the live web
view (``--ui``). Each listens where it is told; a port already taken is a one-line ConfigError at start-up.

A request aiohttp cannot parse (a 64 KB header line, bytes that are not HTTP) gets its 400 from aiohttp, and one
debug line here: aiohttp would log a full traceback for each, so anyone who can reach the port could fill the
log with them. Errors in the handlers themselves are still logged whole."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from pipelines.config import Address
from pipelines.outputs.access import OPEN, Gate, WebAccess, is_loopback
from streamer.errors import ConfigError

if TYPE_CHECKING:
    from pipelines.outputs.metrics import Metrics
    from pipelines.outputs.webui import LiveView

log = logging.getLogger("streamer")


class _BadRequestsInOneLine(logging.Filter):
    """On the servers' logger: a request that could not be parsed becomes one debug line (see the docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        why = " ".join(str(exc.message).split())
        log.debug("http: %d to %s: %s: %s", exc.code, remote, type(exc).__name__, why[:80])
        return False


server_log = logging.getLogger("streamer.http")
server_log.addFilter(_BadRequestsInOneLine())


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

    async def serve(self, name: str, app: web.Application, where: Address, access: WebAccess = OPEN) -> str:
        """Serve ``app`` at ``where`` (GET and HEAD only; TLS and basic authentication as ``access`` says); its
        URL."""
        app.middlewares.append(Gate(access).middleware)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0, logger=server_log)
        await runner.setup()
        site = web.TCPSite(runner, where.host, where.port, ssl_context=access.tls)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise ConfigError(f"{name} at {where}: cannot listen: {why}") from None
        self._runners.append(runner)
        host, port = runner.addresses[0][:2]
        shown = "localhost" if host in ("127.0.0.1", "::1") else host
        url = f"{access.scheme}://[{shown}]:{port}" if ":" in shown else f"{access.scheme}://{shown}:{port}"
        self.urls[name] = url
        return url

    async def close(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()


async def start_endpoints(
    server: WebServer, metrics: Metrics | None, view: LiveView | None, metrics_at: Address | None,
    ui_at: Address | None, access: WebAccess = OPEN,
) -> None:  # fmt: skip
    if metrics is not None and metrics_at is not None:
        url = await server.serve("metrics", metrics_app(metrics), metrics_at, access)
        log.warning("metrics at %s/metrics", url)
        _warn_if_open("metrics", metrics_at, access)
    if view is not None and ui_at is not None:
        from pipelines.outputs.webui import ui_app

        url = await server.serve("ui", ui_app(view), ui_at, access)
        log.warning("live view at %s/", url)
        _warn_if_open("the live view", ui_at, access)


def _warn_if_open(what: str, where: Address, access: WebAccess) -> None:
    """One line when an endpoint listens beyond this machine with no password, or with passwords in clear."""
    if access.users and access.tls is None and not is_loopback(where.host):
        log.warning("%s: listening on %s:%d with passwords over plain HTTP: anyone on the way can read them "
                    "(give tls_server_config in --web-config)", what, where.host or "*", where.port)  # fmt: skip
    if not access.users and not is_loopback(where.host):
        log.warning("%s: listening on %s:%d without a password: anyone who can reach this port can read it "
                    "(give --web-config with basic_auth_users, or a host of 127.0.0.1)", what, where.host or "*",
                    where.port)  # fmt: skip
