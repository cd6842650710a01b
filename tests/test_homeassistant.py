"""Home Assistant MQTT discovery against a real mosquitto and real ``streamer run`` processes."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path
from typing import Any

import aiomqtt

from pipelines.bench.mosquitto import free_port
from pipelines.config import HomeAssistantConfig, StreamConfig
from pipelines.outputs.homeassistant import COMPONENTS, HomeAssistant, discovery_configs, node_id
from pipelines.stages.outbox import Outbox
from pipelines.stages.topics import Topics
from streamer.errors import EXIT_NOT_OPENED
from streamer.spec import parse_source

from .analyzer_run import retained, run_streamer, start_streamer, subscribe
from .helpers import drain, until

SECRET = "hunter2-sEcReT"
CONFIG_RE = re.compile(r"^homeassistant/(binary_sensor|sensor|image)/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)/config$")
REQUIRED = {"binary_sensor": ["state_topic"], "sensor": ["state_topic"], "image": ["image_topic", "content_type"]}


def write_config(path: Path, url: str, streams: str) -> Path:
    path.write_text(f"""
[mqtt]
url = "{url}"
prefix = "test"
username = "alice"
password = "{SECRET}"

[homeassistant]
discovery = true
interval = 0.5
{streams}
""")
    return path


ALL_STREAMS = f"""
[[streams]]
name = "cam"
source = "synthetic:?events=av@3.5,v@6&duration=9"

[[streams]]
name = "door"
source = "synthetic:?events=a@3&duration=9"
device_class = "sound"

[[streams]]
source = "rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/x"
"""


def check_config(topic: str, payload: dict[str, Any]) -> None:
    """What Home Assistant needs of a discovery config, and the names it accepts."""
    match = CONFIG_RE.match(topic)
    assert match, topic
    component, node, obj = match.groups()
    assert COMPONENTS.get(obj, "binary_sensor") == component  # not listed: a zone's or a tag's binary sensor
    for key in ["name", "unique_id", "availability", *REQUIRED[component]]:
        assert key in payload, (topic, key)
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", payload["unique_id"]) and payload["unique_id"] == f"{node}_{obj}"
    assert payload["default_entity_id"] == f"{component}.{payload['unique_id']}"
    device = payload["device"]
    assert device["identifiers"] == [node] and device["name"] and device["sw_version"]
    assert payload["availability"][0] == {"topic": "test/status", "payload_available": "online",
                                          "payload_not_available": "offline"}  # fmt: skip
    if component == "sensor" and obj != "status":
        assert payload["state_class"] == "measurement"


async def test_discovery_configs_states_and_removal(tmp_path: Path, mqtt_broker: Any) -> None:
    broker = mqtt_broker()
    config = write_config(tmp_path / "ha.toml", broker.url, ALL_STREAMS)
    async with subscribe(broker.host, broker.port, "#") as sub:
        proc = await start_streamer("run", "--config", str(config))
        try:
            await sub.wait_for("test/cam/activity", "ON", within=60)
            assert await until(lambda: len({m.topic for m in sub.messages if m.topic.endswith("/config")}) == 21, 10)
            configs = {m.topic: json.loads(m.payload) for m in sub.messages if m.topic.endswith("/config")}
            for topic, payload in configs.items():
                check_config(topic, payload)
            cam = node_id("test", "cam")
            assert configs[f"homeassistant/binary_sensor/{cam}/activity/config"]["device_class"] == "motion"
            door = node_id("test", "door")
            assert configs[f"homeassistant/binary_sensor/{door}/activity/config"]["device_class"] == "sound"
            assert configs[f"homeassistant/image/{cam}/snapshot/config"]["image_topic"] == "test/cam/snapshot"
            speech = configs[f"homeassistant/binary_sensor/{cam}/tag_speech/config"]  # speech tags: on by default
            assert speech["state_topic"] == "test/cam/tags/speech" and speech["device_class"] == "sound"

            # Home Assistant restarts and announces itself: every config comes again
            before = len([m for m in sub.messages if m.topic.endswith("/config")])
            async with aiomqtt.Client(broker.host, broker.port) as ha:
                await ha.publish("homeassistant/status", b"online", qos=1)
            assert await until(lambda: len([m for m in sub.messages if m.topic.endswith("/config")]) >= before + 21, 20)

            # the activity follows the events; the sensors' levels come at their interval
            assert await until(lambda: sub.payloads("test/cam/activity").count("OFF") >= 3, 30)
            assert await until(lambda: sub.payloads("test/door/activity").count("OFF") >= 2, 30)
            rtsp = next(p["device"]["name"] for p in configs.values() if p["device"]["name"] not in ("cam", "door"))
            await sub.wait_for(f"test/{rtsp}/status", "reconnecting", within=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                out, err = await proc.communicate()
        assert proc.returncode == EXIT_NOT_OPENED, err.decode()[-2000:]  # the RTSP stream never opened
        events = [m.json() for m in sub.on("test/cam/events")]
        assert [e["type"] for e in events] == ["start", "end", "start", "end"]
        assert sub.payloads("test/cam/activity") == ["OFF", "ON", "OFF", "ON", "OFF"]
        assert sub.payloads("test/door/activity") == ["OFF", "ON", "OFF"]
        levels = [m.json() for m in sub.on("test/cam/levels")]
        assert len(levels) >= 8 and all(isinstance(x["score"], float) for x in levels)
        assert max(x["score"] for x in levels) >= 0.9 and min(x["score"] for x in levels) < 0.3
        everything = out + err + b"".join(m.topic.encode() + m.payload for m in sub.messages)
        assert SECRET.encode() not in everything

    kept = await retained(broker.host, broker.port, "homeassistant/#")
    assert len([t for t, p in kept.items() if p]) == 21

    # the next run no longer has door and the camera: their entities are removed, cam's stay
    write_config(config, broker.url, '[[streams]]\nname = "cam"\nsource = "synthetic:?events=av@3.5&duration=5"\n')
    code, _, err = await run_streamer("--config", str(config))
    assert code == 0, err
    kept = await retained(broker.host, broker.port, "#")
    announced = {t for t, p in kept.items() if t.startswith("homeassistant/") and p}
    assert announced == {t for t in configs if f"/{cam}/" in t}
    assert json.loads(kept["test/homeassistant/streams"]) == ["cam"]


def test_a_stream_removed_while_running_is_removed_from_home_assistant() -> None:
    topics = Topics("site/a")
    stream = StreamConfig(spec=parse_source("gate=synthetic:"), alpha=0.2, beta=0.8)
    configs = discovery_configs(stream, topics, "homeassistant")
    assert configs["homeassistant/binary_sensor/site_a_gate/activity/config"]["device_class"] == "sound"
    for registry in (True, False):
        outbox = Outbox(100)
        ha = HomeAssistant(HomeAssistantConfig(discovery=True), topics, outbox, registry=registry)
        ha.stream_added(stream)
        assert set(configs) == {m.topic for m in drain(outbox) if m.topic.endswith("/config")}
        ha.stream_removed("gate")
        removed = {m.topic: m for m in drain(outbox)}
        if registry:  # `streamer run`: its entities go
            assert set(configs) <= set(removed)
            assert all(removed[t].payload == b"" and removed[t].retain for t in [*configs, "site/a/gate/activity"])
        else:  # a cluster's worker: the stream may only be moving; the next worker's configs could come first
            assert not removed
