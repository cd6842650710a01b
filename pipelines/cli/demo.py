"""``streamer demo``: the analyzer on the built-in synthetic source, its events read back over MQTT, live.

It needs nothing installed: when no broker answers at the MQTT URL (default ``mqtt://localhost:1883``) and that
URL is on this machine, it starts an embedded broker (amqtt, on 127.0.0.1 only) for the run. It subscribes to
``{prefix}/+/events`` like any user would and prints each event as it arrives: wall clock, stream, start/end,
media time, S, S_v and S_a.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TextIO

import aiomqtt

from pipelines.cli.display import format_event
from pipelines.cli.terminal import outcome
from pipelines.config import AnalyzerConfig
from pipelines.stages.mqtt import mqtt_client
from streamer.errors import ConfigError
from streamer.media import StateChange

log = logging.getLogger("streamer")

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
PROBE_TIMEOUT = 2.0
SUBSCRIBER_TIMEOUT = 5.0
DRAIN_TIMEOUT = 3.0  # seconds to wait for the last events to come back after the analysis ends


async def broker_answers(config: AnalyzerConfig) -> bool:
    """Whether the configured MQTT broker accepts a connection (within PROBE_TIMEOUT)."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            async with mqtt_client(config.mqtt, PROBE_TIMEOUT):
                return True
    except (aiomqtt.MqttError, TimeoutError, OSError):
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_embedded_broker(port: int) -> Any:
    """An amqtt broker on 127.0.0.1:``port``, anonymous access, no $SYS topics; ``await broker.shutdown()``."""
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    from amqtt.broker import Broker

    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        # Giving plugins replaces amqtt's defaults (event/packet loggers, $SYS); anonymous auth must stay.
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })  # fmt: skip
    await broker.start()
    return broker


async def demo(
    config: AnalyzerConfig,
    *,
    on_signals: Callable[[Callable[[], None]], None],
    on_state: Callable[[StateChange], None] | None = None,
    out: TextIO = sys.stdout,
) -> int:
    from pipelines.analyzer import Analyzer, Hooks
    from pipelines.stages.topics import Topics

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    broker = None
    mqtt = config.mqtt
    width = max([12, *(len(s.stream_id) for s in config.streams)])
    if mqtt.url is not None and not await broker_answers(config):
        if mqtt.host not in LOCAL_HOSTS or mqtt.tls:
            raise ConfigError(f"mqtt: no broker answers at {mqtt.display_url}")
        port = mqtt.port if _port_free(mqtt.port) else _free_port()
        broker = await start_embedded_broker(port)
        config = replace(config, mqtt=replace(mqtt, url=f"mqtt://127.0.0.1:{port}"))
        say(f"streamer demo: no MQTT broker answered at {mqtt.display_url}; started an embedded one (amqtt) "
            f"on 127.0.0.1:{port} for this run")  # fmt: skip
    elif mqtt.url is not None:
        say(f"streamer demo: using the MQTT broker at {mqtt.display_url}")
    topics = Topics(config.mqtt.prefix)
    ends = 0  # event ends shown
    arrived = asyncio.Event()

    def show(event: dict[str, Any]) -> None:
        nonlocal ends
        ends += event.get("type") == "end"
        say(format_event(event, width))
        arrived.set()

    try:
        async with contextlib.AsyncExitStack() as stack:
            if config.mqtt.url is not None:
                subscriber = mqtt_client(config.mqtt, SUBSCRIBER_TIMEOUT)
                await stack.enter_async_context(subscriber)
                await subscriber.subscribe(f"{topics.prefix}/+/events", qos=1)
                listener = asyncio.create_task(_listen(subscriber, show), name="demo-subscriber")
                stack.callback(listener.cancel)
                say(f"subscribed to {topics.prefix}/+/events at {config.mqtt.display_url}; events show up as they "
                    "are published (Ctrl-C stops)")  # fmt: skip
            hooks = Hooks(on_state=on_state)
            if config.mqtt.url is None:
                hooks.on_event = lambda event: show(event.as_dict())
            sources = ", ".join(s.spec.redacted for s in config.streams)
            say(f"analyzing {sources}")
            say(f"{'time':<8}  {'stream':<{width}} {'event':<5}  media time  scores")
            analyzer = Analyzer(config, hooks)
            on_signals(analyzer.stop)
            summary = await analyzer.run()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_TIMEOUT):
                    while ends < summary.events:  # the last ones are still on their way back
                        arrived.clear()
                        await arrived.wait()
    finally:
        if broker is not None:
            await broker.shutdown()
    received = f"done: {ends} event(s) received over MQTT" if config.mqtt.url else f"done: {ends} event(s)"
    say(received + outcome(summary))
    return summary.exit_code


async def _listen(client: aiomqtt.Client, show: Callable[[dict[str, Any]], None]) -> None:
    seen: set[tuple[str, str]] = set()
    async for message in client.messages:
        try:
            event = json.loads(bytes(message.payload))
        except (TypeError, ValueError):
            continue
        key = (str(event.get("id")), str(event.get("type")))
        if key in seen:  # QoS 1 is at least once: de-duplicate by id
            continue
        seen.add(key)
        show(event)
