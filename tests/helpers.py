"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from pipelines.stages.outbox import Message, Outbox
from streamer.media import Timestep
from streamer.stream import Stream

T = TypeVar("T")


async def until(condition: Callable[[], T], seconds: float) -> T:
    """Poll ``condition`` for at most ``seconds``; its first true value, or its last (false) one at the deadline
    (the caller judges: ``assert await until(...)``)."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(0.05)


async def collect(stream: Stream, limit: int | None = None, into: list[Timestep] | None = None) -> list[Timestep]:
    """``stream``'s timesteps (up to ``limit``), appended to ``into`` as they come when given (run it as a task
    and read the list while it runs)."""
    steps: list[Timestep] = [] if into is None else into
    async for ts in stream:
        steps.append(ts)
        if limit is not None and len(steps) >= limit:
            break
    return steps


def drain(outbox: Outbox) -> list[Message]:
    """Everything the outbox hands out, in order, each acknowledged as if the broker took it."""
    out = []
    while (m := outbox.peek()) is not None:
        out.append(m)
        outbox.done(m)
    return out


def loudest(steps: list[Timestep]) -> int:
    """k of the first timestep whose audio RMS is within 6 dB of the loudest."""
    rms = np.array([np.sqrt(np.mean(np.square(ts.audio))) if len(ts.audio) else 0.0 for ts in steps])
    return steps[int(np.argmax(rms >= rms.max() / 2))].k


def brightest(steps: list[Timestep]) -> int:
    """k of the first timestep whose mean luma is within 10% of the brightest (frame-by-frame max)."""
    luma = np.array([max((f.luma.mean() for f in ts.frames), default=0.0) for ts in steps])
    base = np.median(luma)
    return steps[int(np.argmax(luma - base >= (luma.max() - base) * 0.5))].k


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """``cert.pem`` and ``key.pem`` in ``folder``: a self-signed certificate for 127.0.0.1 (openssl)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@contextlib.contextmanager
def serving(
    directory: Path, certificate: tuple[Path, Path] | None = None,
    handler: type[http.server.SimpleHTTPRequestHandler] = http.server.SimpleHTTPRequestHandler,
) -> Iterator[int]:  # fmt: skip
    """A threaded HTTP server on 127.0.0.1 for ``directory`` (HTTPS with ``certificate``, its cert and key files,
    such as :func:`self_signed_certificate` makes); its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(directory)))
    if certificate is not None:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(*certificate)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
