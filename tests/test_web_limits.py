"""The analyzer's HTTP endpoints (the live view, ``/metrics``) against real clients over real sockets: the live
event stream takes a bounded number of clients, and a request too large to parse is a 400 without a traceback
in the log."""

from __future__ import annotations

import asyncio
import signal

import aiohttp

from pipelines.bench.mosquitto import free_port
from pipelines.outputs.webui import MAX_CLIENTS

from .analyzer_run import start_streamer


async def answers(url: str, within: float = 60) -> None:
    async with asyncio.timeout(within), aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)


async def online(base: str, within: float = 60) -> None:
    """Until the live view says stream ``cam`` is online (a run stopped before would say it never opened)."""
    async with asyncio.timeout(within), aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(base + "/api/state") as response:
                    if (await response.json())["streams"].get("cam", {}).get("state") == "online":
                        return
            except (aiohttp.ClientError, ValueError):
                pass
            await asyncio.sleep(0.2)


async def stop(proc: asyncio.subprocess.Process) -> str:
    """SIGTERM, wait, and what it said on stderr."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    return err.decode()


async def test_the_live_event_stream_takes_at_most_max_clients() -> None:
    """Every live view costs the analyzer's event loop a write per update: past MAX_CLIENTS a new one gets a 503
    with a one-line body (there was no cap); once one leaves, a new one gets in."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await start_streamer("run", "cam=synthetic:?duration=300", "--mqtt", "none", "--ui", f"127.0.0.1:{port}",
                                "-q")  # fmt: skip
    try:
        await online(base)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            views = []
            for _ in range(MAX_CLIENTS):
                response = await session.get(base + "/api/live")
                assert response.status == 200
                assert (await response.content.readany()).startswith(b"data: {")  # its first message
                views.append(response)
            async with session.get(base + "/api/live") as over:
                assert over.status == 503
                body = await over.text()
            assert body.endswith("\n") and body.count("\n") == 1 and str(MAX_CLIENTS) in body, body
            views.pop().close()  # one leaves: the analyzer notices at its next write
            async with asyncio.timeout(10):
                while True:
                    async with session.get(base + "/api/live") as again:
                        if again.status == 200:
                            assert (await again.content.readany()).startswith(b"data: {")
                            break
                    await asyncio.sleep(0.2)
            for view in views:
                view.close()
    finally:
        err = await stop(proc)
    assert proc.returncode == 0, err


async def too_long_a_header(port: int, path: str) -> bytes:
    """A GET with one 64 KB header line, over a plain socket; the response's status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ".encode() + b"a" * 65536 + b"\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(10):
            return (await reader.readline()).strip()
    finally:
        writer.close()


async def test_a_request_too_long_to_parse_is_a_400_without_a_traceback() -> None:
    """It was a full aiohttp traceback (``LineTooLong``) in the log for every such request: now one debug line."""
    ui, metrics = free_port(), free_port()
    proc = await start_streamer("run", "cam=synthetic:?duration=300", "--mqtt", "none", "--ui", f"127.0.0.1:{ui}",
                                "--metrics", f"127.0.0.1:{metrics}", "-vv")  # fmt: skip
    try:
        await online(f"http://127.0.0.1:{ui}")
        await answers(f"http://127.0.0.1:{metrics}/metrics")
        for port, path in ((ui, "/"), (ui, "/api/live"), (metrics, "/metrics")):
            status = await too_long_a_header(port, path)
            assert status.split()[1:2] == [b"400"], status
        await answers(f"http://127.0.0.1:{ui}/api/state")  # and it goes on serving
    finally:
        err = await stop(proc)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "Error handling request" not in err, err[-3000:]
    said = [line for line in err.splitlines() if "LineTooLong" in line]
    assert len(said) == 3 and all(len(line) < 200 for line in said), said  # at debug (-vv), one short line each
