"""The MQTT publisher: drains the outbox into the broker, reconnecting for as long as the analyzer runs.

On every connection it sets the will ``{prefix}/status = offline`` (retained, QoS 1), then publishes
``online`` (retained) and what the outbox hands out (:mod:`pipelines.stages.outbox`: events first), keeping up to
``WINDOW`` publishes in flight over the one connection (sent in order, so each stream's events stay in order on
the wire; each leaves the outbox when its PUBACK comes). A lost connection (broker restart, network, a broker
closing it on a message it will not take) is retried with jittered exponential backoff (0.5 s doubling to
10 s); what was not acknowledged stays in the outbox and goes first after reconnecting, one message at a time
until each is acknowledged, so a message the broker keeps disconnecting on is found and, after the outbox's
``max_attempts``, dropped with a log line naming its topic. :meth:`Publisher.close` flushes the outbox (bounded
by a deadline), publishes ``offline`` itself and disconnects cleanly. TCP_NODELAY is set (small messages must
not wait for Nagle). The mqtts files (CA, client certificate and key) are read again at every connection, so a
renewed certificate is taken up; one that cannot be read then is an error line naming it, and the publisher
keeps retrying (the files were checked at start-up: :func:`pipelines.config.check_tls_files`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import aiomqtt

from pipelines.config import MqttConfig, reason_of
from pipelines.stages.outbox import Message, Outbox
from pipelines.stages.topics import Topics
from streamer.errors import ConfigError

log = logging.getLogger(__name__)


class Listener(Protocol):
    """Hears the connection: its topics are subscribed on every connection (QoS 1), then :meth:`connected`
    is called; what arrives on them goes to :meth:`received` (on the publisher's task: return quickly)."""

    def subscriptions(self) -> list[str]: ...

    def connected(self) -> None: ...

    def received(self, topic: str, payload: bytes) -> None: ...


PUBLISH_TIMEOUT = 5.0  # seconds to wait for a PUBACK before treating the connection as lost
WINDOW = 32  # QoS 1 publishes in flight at once
CLOSED = "the broker closed the connection"
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 10.0


class TlsFileError(ConfigError):
    """An mqtts file (CA bundle, client certificate or key) cannot be read or is not what it should be."""


def mqtt_client(config: MqttConfig, timeout: float, **options: Any) -> aiomqtt.Client:
    """A client of the configured broker with its credentials and TLS settings (the publisher's, and a
    subscriber's, a probe's or a one-off publish's, which connect alike); ``options``: aiomqtt's others."""
    return aiomqtt.Client(config.host, config.port, username=config.username, password=config.password,
                          tls_context=tls_context(config), timeout=timeout, **options)  # fmt: skip


def tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    """The TLS settings of an mqtts connection (None for mqtt); :class:`TlsFileError` naming the file that cannot
    be loaded."""
    if not config.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=config.ca_file)
        if config.cert_file:
            context.load_cert_chain(config.cert_file, config.key_file)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise TlsFileError(f"cannot load {_tls_files(config)}: {reason_of(exc)}") from exc
    if config.tls_insecure:
        context.check_hostname = False
    return context


def _tls_files(config: MqttConfig) -> str:
    """The file to blame: the first one set that is not a readable file, else every one set."""
    files = [(name, path) for name, path in (("ca_file", config.ca_file), ("cert_file", config.cert_file),
                                             ("key_file", config.key_file)) if path]  # fmt: skip
    missing = [(name, path) for name, path in files if not (os.path.isfile(path) and os.access(path, os.R_OK))]
    return " / ".join(f"mqtt.{name} {path!r}" for name, path in (missing[:1] or files))


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
        self.listeners: list[Listener] = []

    def _make_client(self) -> aiomqtt.Client:
        return mqtt_client(
            self.config,
            PUBLISH_TIMEOUT,
            identifier=self._identifier,
            keepalive=self.config.keepalive,
            will=aiomqtt.Will(self.topics.presence, b"offline", qos=1, retain=True),
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            max_inflight_messages=WINDOW + 2,  # the window, "online" and "offline": paho would queue the rest
        )

    async def run(self) -> None:
        """Connect, publish, reconnect; runs until cancelled or :meth:`close`."""
        failures = 0
        while not self._closing:
            connected = False
            try:
                client = self._make_client()
                client.pending_calls_threshold = 2 * WINDOW  # aiomqtt warns past it
                async with client:
                    connected = True
                    self._client = client
                    await client.publish(self.topics.status, b"online", qos=1, retain=True)
                    if self.topics.presence != self.topics.status:
                        await client.publish(self.topics.presence, b"online", qos=1, retain=True)
                    if failures:
                        log.warning("mqtt: reconnected to %s", self.config.display_url)
                    failures = 0
                    self.outbox.connected = True
                    self.connected.set()
                    for listener in self.listeners:
                        await self._listen(client, listener)
                    await self._drain(client)
            except TlsFileError as exc:  # one line per attempt; the streams go on, their events wait in the outbox
                failures += 1
                delay = self._delay(failures)
                log.error("mqtt: cannot connect to %s: %s; %d event(s) wait in the outbox; retrying in %.1f s",
                          self.config.display_url, exc, self.outbox.pending_events, delay)  # fmt: skip
                await self._backoff(delay)
            except aiomqtt.MqttError as exc:
                self._lost(exc)
                failures += 1
                delay = self._delay(failures)
                if failures == 1 or failures % 10 == 0:
                    log.warning(
                        "mqtt: %s (%s); %d event(s) wait in the outbox; retrying in %.1f s",
                        f"lost the connection to {self.config.display_url}" if connected
                        else f"{self.config.display_url} unreachable",
                        _cause(exc), self.outbox.pending_events, delay,
                    )  # fmt: skip
                await self._backoff(delay)
            finally:
                self._lost(None)

    def _delay(self, failures: int) -> float:
        return min(BACKOFF_MAX, BACKOFF_INITIAL * 2.0 ** (failures - 1)) * self._rng.uniform(0.75, 1.25)

    async def _backoff(self, delay: float) -> None:
        """Wait ``delay`` before reconnecting; once :meth:`close` flushes, at most BACKOFF_INITIAL, so a broker
        back during the flush window gets what waits instead of a backoff grown over a long outage."""
        if self._flushing.is_set():
            await asyncio.sleep(min(delay, BACKOFF_INITIAL))
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._flushing.wait()

    def _lost(self, exc: aiomqtt.MqttError | None) -> None:
        """The connection ended (``exc``: how it failed; None: cancelled or closed, no message is blamed)."""
        self._client = None
        self.connected.clear()
        self.outbox.connected = False
        for message in self.outbox.lost(blame=exc is not None):
            self._log_rejected(message, _why_rejected(exc))
        self.outbox.drop_scores()

    def _log_rejected(self, message: Message, why: str) -> None:
        log.warning("mqtt: dropped a %d-byte message to %s after %d attempt(s): %s", len(message.payload),
                    message.topic, self.outbox.max_attempts, why)  # fmt: skip

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish what the outbox hands out, ``WINDOW`` at a time, until the connection fails (MqttError)."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_watch(client, self._received), name="mqtt-watch")
                while True:
                    message = await self.outbox.take(WINDOW)
                    # tasks start in creation order and publish before their first await: the wire keeps this order
                    tg.create_task(self._send(client, message), name="mqtt-publish")
        except BaseExceptionGroup as group:
            errors = [e for e in group.exceptions if isinstance(e, aiomqtt.MqttError)]
            if len(errors) < len(group.exceptions):
                raise
            raise errors[0] from errors[0].__cause__

    async def _send(self, client: aiomqtt.Client, message: Message) -> None:
        try:
            await client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        except ValueError as exc:  # paho refuses it outright (larger than MQTT allows): it can never go out
            self.outbox.reject(message)
            self._log_rejected(message, str(exc))
            return
        except aiomqtt.MqttCodeError:  # not sent at all (the connection is gone): no attempt counted
            self.outbox.release(message)
            raise
        self.outbox.done(message)

    async def _listen(self, client: aiomqtt.Client, listener: Listener) -> None:
        """Subscribe ``listener``'s topics and tell it; a listener that fails is logged, the publisher goes on."""
        try:
            topics = listener.subscriptions()
        except Exception:
            log.exception("mqtt: a listener failed")
            return
        for topic in topics:
            await client.subscribe(topic, qos=1)  # MqttError: the connection is lost, as for a publish
        try:
            listener.connected()
        except Exception:
            log.exception("mqtt: a listener failed")

    def _received(self, message: aiomqtt.Message) -> None:
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload or "").encode()
        for listener in self.listeners:
            try:
                listener.received(str(message.topic), payload)
            except Exception:
                log.exception("mqtt: a listener failed on %s", message.topic)

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
                    await client.publish(self.topics.presence, b"offline", qos=1, retain=True)
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        return flushed


async def _watch(client: aiomqtt.Client, received: Callable[[aiomqtt.Message], None]) -> None:
    """Hand out what arrives on the listeners' topics, and raise MqttError as soon as the connection is lost:
    aiomqtt wakes a publish waiting for its PUBACK only at its timeout, and a broker that closes the connection
    on a message it will not take gives no other sign."""
    try:
        async for message in client.messages:  # this only ends with the connection
            received(message)
    except aiomqtt.MqttError as exc:
        raise aiomqtt.MqttError(CLOSED) from exc.__cause__
    raise aiomqtt.MqttError(CLOSED)


def _why_rejected(exc: BaseException | None) -> str:
    if str(exc) == CLOSED:
        return f"{CLOSED} each time it was sent alone (is it larger than the broker's max_packet_size?)"
    return f"the connection failed each time it was sent alone ({_cause(exc)})"


def _cause(exc: BaseException | None) -> str:
    if exc is None:
        return "cancelled"
    text = str(exc) or type(exc).__name__
    if text == "Operation timed out":
        text = f"no acknowledgement within {PUBLISH_TIMEOUT:g} s"
    if isinstance(exc.__cause__, OSError) and exc.__cause__.strerror:
        text = exc.__cause__.strerror.lower()
    return " ".join(text.split())
