"""Helpers for the analyzer's end-to-end tests: run ``streamer`` as users do, read what it publishes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

STREAMER = [sys.executable, "-m", "pipelines.cli.main"]


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """Everything published under ``topic`` while it runs, in arrival order."""

    messages: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    def payloads(self, topic: str) -> list[str]:
        return [m.payload.decode() for m in self.on(topic)]

    def events(self, stream: str, prefix: str = "test") -> list[dict[str, Any]]:
        return [m.json() for m in self.on(f"{prefix}/{stream}/events")]

    async def wait_for(self, topic: str, payload: str | None = None, within: float = 60) -> Received:
        async with asyncio.timeout(within):
            while True:
                for m in self.on(topic):
                    if payload is None or m.payload.decode() == payload:
                        return m
                self.arrived.clear()
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def subscribe(
    host: str, port: int, topic: str = "test/#", *, identifier: str | None = None, **client_options: Any
) -> AsyncIterator[Subscriber]:
    """With ``identifier``, a persistent session: the broker keeps QoS 1 messages for it while it is away.
    ``client_options`` go to ``aiomqtt.Client`` (username, password, tls_context...)."""
    subscriber = Subscriber()
    persistent = None if identifier is None else False
    async with aiomqtt.Client(host, port, identifier=identifier, clean_session=persistent, **client_options) as client:
        await client.subscribe(topic, qos=1)

        async def listen() -> None:
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                subscriber.messages.append(Received(str(message.topic), payload, bool(message.retain)))
                subscriber.arrived.set()

        task = asyncio.create_task(listen())
        try:
            yield subscriber
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def retained(host: str, port: int, topic: str = "test/#", settle: float = 1.0) -> dict[str, bytes]:
    """What a subscriber arriving now gets as retained messages."""
    async with subscribe(host, port, topic) as subscriber:
        await asyncio.sleep(settle)
    return {m.topic: m.payload for m in subscriber.messages if m.retain}


STARTED: list[asyncio.subprocess.Process] = []  # killed after each test if still running (tests/conftest.py)


async def start_streamer(*args: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        *STREAMER, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    STARTED.append(proc)
    return proc


async def streamer(*args: str, within: float = 120) -> tuple[int, str, str]:
    """``streamer ARGS...`` to its end: (exit code, stdout, stderr)."""
    proc = await start_streamer(*args)
    async with asyncio.timeout(within):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run_streamer(*args: str, within: float = 120) -> tuple[int, str, str]:
    """``streamer run ARGS...``: (exit code, stdout, stderr)."""
    return await streamer("run", *args, within=within)


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def intervals(events: list[dict[str, Any]], stream: str | None = None) -> list[tuple[float, float]]:
    """(start_t, end t) of each ended event, in order."""
    return [(e["start_t"], e["t"]) for e in events if e["type"] == "end" and stream in (None, e["stream"])]
