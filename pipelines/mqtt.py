"""The MQTT publisher: drains the outbox into the broker, reconnecting for as long as the analyzer runs.

On every connection it sets the will ``{prefix}/status = offline`` (retained, QoS 1), then publishes
``online`` (retained) and the outbox in order. A lost connection (broker restart, network) is retried with
jittered exponential backoff (0.5 s doubling to 10 s); what was not acknowledged stays in the outbox and goes
first after reconnecting. :meth:`Publisher.close` flushes the outbox (bounded by a deadline), publishes
``offline`` itself and disconnects cleanly. TCP_NODELAY is set (small messages must not wait for Nagle).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
import uuid

import aiomqtt

from .config import MqttConfig
from .outbox import Message, Outbox
from .topics import Topics

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 5.0  # seconds to wait for a PUBACK before treating the connection as lost
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 10.0


def tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    if not config.tls:
        return None
    context = ssl.create_default_context(cafile=config.ca_file)
    if config.cert_file:
        context.load_cert_chain(config.cert_file, config.key_file)
    if config.tls_insecure:
        context.check_hostname = False
    return context


class Publisher:
    def __init__(self, config: MqttConfig, topics: Topics, outbox: Outbox) -> None:
        if config.url is None:
            raise ValueError("no broker configured")
        self.config = config
        self.topics = topics
        self.outbox = outbox
        self.connected = asyncio.Event()
        self._closing = False
        self._flushing = asyncio.Event()  # close() is flushing: retry the broker at once and often
        self._client: aiomqtt.Client | None = None
        self._identifier = config.client_id or f"streamer-{uuid.uuid4().hex[:12]}"
        self._rng = random.Random()

    def _make_client(self) -> aiomqtt.Client:
        c = self.config
        return aiomqtt.Client(
            c.host,
            c.port,
            username=c.username,
            password=c.password,
            identifier=self._identifier,
            keepalive=c.keepalive,
            timeout=PUBLISH_TIMEOUT,
            will=aiomqtt.Will(self.topics.status, b"offline", qos=1, retain=True),
            tls_context=tls_context(c),
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )

    async def run(self) -> None:
        """Connect, publish, reconnect; runs until cancelled or :meth:`close`."""
        failures = 0
        while not self._closing:
            try:
                async with self._make_client() as client:
                    self._client = client
                    await client.publish(self.topics.status, b"online", qos=1, retain=True)
                    if failures:
                        log.warning("mqtt: reconnected to %s", self.config.display_url)
                    failures = 0
                    self.outbox.connected = True
                    self.connected.set()
                    await self._drain(client)
            except aiomqtt.MqttError as exc:
                self._lost()
                failures += 1
                delay = min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (failures - 1)) * self._rng.uniform(0.75, 1.25)
                if failures == 1 or failures % 10 == 0:
                    log.warning(
                        "mqtt: %s unreachable (%s); %d event(s) wait in the outbox; retrying in %.1f s",
                        self.config.display_url, _cause(exc), self.outbox.pending_events, delay,
                    )  # fmt: skip
                await self._backoff(delay)
            finally:
                self._lost()

    async def _backoff(self, delay: float) -> None:
        """Wait ``delay`` before reconnecting; once :meth:`close` flushes, at most BACKOFF_INITIAL, so a broker
        back during the flush window gets what waits instead of a backoff grown over a long outage."""
        if self._flushing.is_set():
            await asyncio.sleep(min(delay, BACKOFF_INITIAL))
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._flushing.wait()

    def _lost(self) -> None:
        self._client = None
        self.connected.clear()
        if self.outbox.connected:
            self.outbox.connected = False
            self.outbox.drop_scores()

    async def _drain(self, client: aiomqtt.Client) -> None:
        while True:
            message = await self.outbox.wait()
            await self._send(client, message)

    async def _send(self, client: aiomqtt.Client, message: Message) -> None:
        await client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        self.outbox.done(message)

    async def close(self, runner: asyncio.Task[None], flush_for: float = 3.0) -> bool:
        """Flush what waits (at most ``flush_for`` s), publish ``offline``, disconnect. True when all went out."""
        deadline = time.monotonic() + flush_for
        self._flushing.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_for):
                await self.outbox.empty()
        flushed = len(self.outbox) == 0
        self._closing = True
        client = self._client
        if client is not None and self.connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(max(0.5, deadline - time.monotonic())):
                    await client.publish(self.topics.status, b"offline", qos=1, retain=True)
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        return flushed


def _cause(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc.__cause__, OSError) and exc.__cause__.strerror:
        text = exc.__cause__.strerror.lower()
    return " ".join(text.split())
