"""TLS and HTTP basic authentication on ``/metrics`` and the web view (``--web-config``, Prometheus's web
configuration format), against a real ``streamer run`` with real clients: the Prometheus text parser over HTTPS
with credentials, and the usual attacks (path traversal, other methods, oversized and slow requests, many live
views) while the analysis goes on and publishes every event to a real mosquitto."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipelines.bench.mosquitto import free_port
from pipelines.config import configure
from pipelines.outputs.access import load_web_config
from pipelines.outputs.webui import MAX_CLIENTS
from streamer.errors import ConfigError

from .analyzer_run import start_streamer, subscribe
from .helpers import self_signed_certificate
from .test_web_limits import stop
from .test_webui import chromium, wait

USER, PASSWORD = "prometheus", "s3cret: with a colon"


def bcrypt_hash(password: str) -> str:
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def web_config(folder: Path, *, tls: bool = True, users: bool = True) -> Path:
    """A web configuration as Prometheus's exporters read it: certificate paths relative to the file."""
    lines = []
    if tls:
        cert, key = self_signed_certificate(folder)
        lines += ["tls_server_config:", f"  cert_file: {cert.name}", f"  key_file: {key.name}"]
    if users:
        lines += ["basic_auth_users:", f"  {USER}: {bcrypt_hash(PASSWORD)}", f"  other: {bcrypt_hash('x')}"]
    path = folder / "web.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def client_tls(folder: Path) -> ssl.SSLContext:
    """Trusts the test's own certificate (and checks the host name against it)."""
    return ssl.create_default_context(cafile=str(folder / "cert.pem"))


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def status_of(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> int:
    async with session.request(method, url, **kwargs) as response:
        await response.read()
        return response.status


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (None, "no such file"),
        ("tls_server_config: [unclosed", "not YAML"),
        ("basic_auth_users:\n  alice: plain-password\n", "alice: not a bcrypt hash"),
        ("http_server_config:\n  http2: true\n", "unknown key 'http_server_config'"),
        ("tls_server_config:\n  cert_file: nowhere.pem\n  key_file: nowhere.key\n", "no such file"),
        ("tls_server_config:\n  cert_file: web.yml\n  key_file: web.yml\n", "cannot load"),
        ("tls_server_config:\n  cert_file: a.pem\n", "needs both cert_file and key_file"),
    ],
)
def test_a_web_config_that_cannot_be_used_is_refused_in_one_line(tmp_path: Path, text: str | None, why: str) -> None:
    path = tmp_path / "web.yml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    line = str(caught.value)
    assert line.startswith(f"web_config {str(path)!r}: ") and why in line and "\n" not in line, line
    if text is not None:  # and the run refuses it at start, from the config file as from the flag
        with pytest.raises(ConfigError, match="web_config"):
            configure({"web_config": str(path)}, sources=["synthetic:"])


def test_a_web_config_in_prometheus_format_loads(tmp_path: Path) -> None:
    access = load_web_config(web_config(tmp_path))
    assert access.scheme == "https" and set(access.users) == {USER, "other"}
    assert load_web_config(web_config(tmp_path, tls=False)).tls is None


async def test_metrics_and_the_view_over_https_with_a_password(tmp_path: Path) -> None:
    """Without credentials 401 (asking for them), a wrong password or user 401, the right one 200: the
    Prometheus parser reads the scrape; plain HTTP to the TLS port gets nothing; only GET and HEAD."""
    config = web_config(tmp_path)
    tls = client_tls(tmp_path)
    ui, metrics = free_port(), free_port()
    proc = await start_streamer("run", "cam=synthetic:?duration=300", "--mqtt", "none", "--ui", f"127.0.0.1:{ui}",
                                "--metrics", f"127.0.0.1:{metrics}", "--web-config", str(config), "-v")  # fmt: skip
    try:
        scrape = f"https://127.0.0.1:{metrics}/metrics"
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(60):
                while True:  # up, and counting timesteps
                    try:
                        async with session.get(scrape, ssl=tls, headers=basic(USER, PASSWORD)) as response:
                            assert response.status == 200
                            text = await response.text()
                        counted = [s.value for family in text_string_to_metric_families(text)
                                   for s in family.samples if s.name == "streamer_stream_timesteps_total"]  # fmt: skip
                        if counted and counted[0] > 0:
                            break
                    except aiohttp.ClientConnectionError:
                        pass
                    await asyncio.sleep(0.2)
            async with session.get(scrape, ssl=tls) as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"].startswith('Basic realm="streamer"')
            assert await status_of(session, "GET", scrape, ssl=tls, headers=basic(USER, "wrong")) == 401
            assert await status_of(session, "GET", scrape, ssl=tls, headers=basic("nobody", PASSWORD)) == 401
            assert await status_of(session, "GET", scrape, ssl=tls, headers=basic("other", PASSWORD)) == 401
            assert await status_of(session, "GET", scrape, ssl=tls, headers={"Authorization": "Basic !!"}) == 401
            view = f"https://127.0.0.1:{ui}"
            assert await status_of(session, "GET", view + "/api/state", ssl=tls) == 401
            assert await status_of(session, "GET", view + "/no/such/path", ssl=tls) == 401  # not a 404: says nothing
            assert await status_of(session, "HEAD", scrape, ssl=tls) == 401
            async with asyncio.timeout(5):  # HEAD of the live stream: its headers, not a live view held open
                assert (
                    await status_of(session, "HEAD", view + "/api/live", ssl=tls, headers=basic(USER, PASSWORD)) == 200
                )
            async with session.get(view + "/api/state", ssl=tls, headers=basic(USER, PASSWORD)) as response:
                assert response.status == 200 and "cam" in (await response.json())["streams"]
            for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
                assert await status_of(session, method, view + "/", ssl=tls, headers=basic(USER, PASSWORD)) == 405
            assert await status_of(session, "HEAD", scrape, ssl=tls, headers=basic(USER, PASSWORD)) == 200
            with pytest.raises(aiohttp.ClientError):  # plain HTTP to the TLS port
                await status_of(session, "GET", f"http://127.0.0.1:{metrics}/metrics")
            with pytest.raises(aiohttp.ClientConnectorCertificateError):  # a client that does not trust it
                await status_of(session, "GET", scrape, ssl=ssl.create_default_context())
    finally:
        err = await stop(proc)
    assert proc.returncode == 0, err[-3000:]
    assert f"metrics at https://localhost:{metrics}/metrics" in err
    assert "without a password" not in err and "Traceback" not in err, err[-3000:]


async def test_the_view_in_a_browser_over_https_with_a_password(tmp_path: Path) -> None:
    """Headless Chromium (trusting the test's certificate by flag, sending the credentials on every request,
    the live event stream's included): the page shows the stream and its plot moves."""
    config = web_config(tmp_path)
    ui = free_port()
    proc = await start_streamer("run", "cam=synthetic:?events=av@3&duration=300", "--mqtt", "none", "--ui",
                                f"127.0.0.1:{ui}", "--web-config", str(config), "-q")  # fmt: skip
    try:
        tls = client_tls(tmp_path)
        async with asyncio.timeout(60), aiohttp.ClientSession(headers=basic(USER, PASSWORD)) as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    if await status_of(session, "GET", f"https://127.0.0.1:{ui}/api/state", ssl=tls) == 200:
                        break
                await asyncio.sleep(0.2)

        def look() -> None:
            with chromium("--ignore-certificate-errors") as browser:
                browser.execute_cdp_cmd("Network.enable", {})
                browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": basic(USER, PASSWORD)})
                browser.get(f"https://127.0.0.1:{ui}/")
                js = browser.execute_script
                cam = "document.querySelector('section.stream[data-stream=\"cam\"]')"
                first = wait(lambda: js(f"return {cam} && {cam}.dataset.lastT"), 30, "the stream's scores plotted")
                wait(lambda: js(f"return {cam}.dataset.lastT") != first, 10, "the plot moves (live updates)")
                assert js("return location.protocol") == "https:"

        await asyncio.to_thread(look)
    finally:
        err = await stop(proc)
    assert proc.returncode == 0, err[-3000:]


async def test_listening_beyond_this_machine_without_a_password_is_one_warning_line(tmp_path: Path) -> None:
    port = free_port()
    proc = await start_streamer("run", "cam=synthetic:?duration=300", "--mqtt", "none", "--metrics",
                                f"0.0.0.0:{port}", "-q")  # fmt: skip
    try:
        async with asyncio.timeout(60), aiohttp.ClientSession() as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    if await status_of(session, "GET", f"http://127.0.0.1:{port}/metrics") == 200:
                        break
                await asyncio.sleep(0.2)
    finally:
        err = await stop(proc)
    said = [line for line in err.splitlines() if "without a password" in line]
    assert len(said) == 1 and f"0.0.0.0:{port}" in said[0] and "--web-config" in said[0], err[-2000:]


def _slow_client(port: int) -> socket.socket:
    """Opens a request and sends only its first bytes (a slow client, or one that went away without closing)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /api/state HTTP/1.1\r\nHost: x\r\n")
    return sock


async def test_the_usual_attacks_get_nothing_and_the_analysis_goes_on(tmp_path: Path, mqtt_broker: Any) -> None:
    """During a run with every event known in advance: path traversal on every path that takes a name, other
    methods with a large body, oversized headers, 300 slow clients holding connections and 3 x MAX_CLIENTS live
    views at once. Each attack gets its refusal, the view and /metrics go on answering, and every event is
    published on time."""
    broker = mqtt_broker()
    config = web_config(tmp_path, tls=False)
    auth = basic(USER, PASSWORD)
    ui, metrics = free_port(), free_port()
    events = "av@8,av@14,av@20,av@26"
    async with subscribe(broker.host, broker.port, "test/#") as got:
        proc = await start_streamer(
            "run", f"cam=synthetic:?events={events}&duration=32", "--mqtt", broker.url, "--prefix", "test",
            "--ui", f"127.0.0.1:{ui}", "--metrics", f"127.0.0.1:{metrics}", "--web-config", str(config),
            "--clips", str(tmp_path / "clips"), "-q",
        )  # fmt: skip
        sockets: list[socket.socket] = []
        try:
            view = f"http://127.0.0.1:{ui}"
            async with aiohttp.ClientSession(headers=auth) as session:
                async with asyncio.timeout(60):
                    while True:
                        with contextlib.suppress(aiohttp.ClientError):
                            if await status_of(session, "GET", view + "/api/state") == 200:
                                break
                        await asyncio.sleep(0.2)
                for path in ("/api/snapshot/..%2F..%2F..%2Fetc%2Fpasswd", "/api/snapshot/../../etc/passwd",
                             "/api/clip/..%2F..%2Fetc%2Fpasswd", "/api/clip/../../../etc/passwd",
                             "/static/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd",
                             "/api/snapshot/nosuchstream", "/api/clip/nosuchevent"):  # fmt: skip
                    async with session.get(view + path) as response:
                        body = await response.read()
                        assert response.status == 404 and b"root:" not in body, (path, response.status)
                big = b"x" * (8 << 20)
                assert await status_of(session, "POST", view + "/api/state", data=big) == 405
                assert await status_of(session, "PUT", f"http://127.0.0.1:{metrics}/metrics", data=big) == 405
                assert await status_of(session, "GET", view + "/", headers={"X-Big": "y" * 20000}) == 400
                sockets = [_slow_client(port) for _ in range(150) for port in (ui, metrics)]
                live: list[int] = []

                async def watch() -> None:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with session.get(view + "/api/live", timeout=aiohttp.ClientTimeout(total=8)) as r:
                            live.append(r.status)
                            if r.status == 200:
                                await r.content.readany()
                                await asyncio.sleep(6)

                watchers = [asyncio.create_task(watch()) for _ in range(3 * MAX_CLIENTS)]
                await asyncio.sleep(1.0)
                for _ in range(10):  # while all that is open, the endpoints still answer a legitimate client
                    async with asyncio.timeout(5):
                        assert await status_of(session, "GET", f"http://127.0.0.1:{metrics}/metrics") == 200
                        assert await status_of(session, "GET", view + "/api/state") == 200
                    await asyncio.sleep(0.5)
                await asyncio.gather(*watchers)
                assert live.count(200) == MAX_CLIENTS and live.count(503) == 2 * MAX_CLIENTS, live
            async with asyncio.timeout(120):
                await proc.wait()
        finally:
            for sock in sockets:
                sock.close()
            err = await stop(proc)
    assert proc.returncode == 0, err[-3000:]
    starts = [m.json() for m in got.on("test/cam/events") if m.json()["type"] == "start"]
    ends = [m.json() for m in got.on("test/cam/events") if m.json()["type"] == "end"]
    assert [round(e["t"]) for e in starts] == [8, 14, 20, 26], json.dumps(starts)[:2000]
    assert len(ends) == 4
    assert "Traceback" not in err, err[-3000:]
