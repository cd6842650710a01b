"""Live control over MQTT (``--control``), end to end with a real mosquitto: a threshold changed while running,
detection switched off and on (its status says so), a bad value refused with its reason, the settings kept
across a restart, and Home Assistant's switch and number entities bound to the command topic."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest

from pipelines.config import build_config
from pipelines.stages.control import changed, checked, live_settings
from streamer.errors import ConfigError
from tests.analyzer_run import Subscriber, run_streamer, start_streamer, subscribe
from tests.media import make_clip

BEEPS = (3.0, 6.0, 9.0, 12.0)  # a beep alone: S = 0.5 S_a ~ 0.49, over the default threshold 0.3, under 0.6


async def send(broker: Any, topic: str, payload: str) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.publish(topic, payload.encode(), qos=1)


async def media_time_past(sub: Subscriber, t: float, within: float = 30) -> None:
    async with asyncio.timeout(within):
        while not any(m.json()["t"] >= t for m in sub.on("test/door/scores")):
            sub.arrived.clear()
            await sub.arrived.wait()


async def result(sub: Subscriber, n: int) -> dict[str, Any]:
    """The ``n``-th result (1-based) on the stream's set/result topic."""
    async with asyncio.timeout(20):
        while len(sub.on("test/door/set/result")) < n:
            sub.arrived.clear()
            await sub.arrived.wait()
    answer: dict[str, Any] = sub.on("test/door/set/result")[n - 1].json()
    return answer


def settings(sub: Subscriber) -> dict[str, Any]:
    last: dict[str, Any] = sub.on("test/door/settings")[-1].json()
    return last


async def test_live_control_over_mqtt(tmp_path: Path, mqtt_broker: Any) -> None:
    broker = mqtt_broker()
    clip = make_clip(tmp_path / "door.mp4", duration=14.0, beeps=BEEPS, beep_len=0.3)
    config = tmp_path / "site.toml"
    config.write_text(f'[[streams]]\nname = "door"\nsource = "{clip}"\n')
    async with subscribe(broker.host, broker.port, "#") as sub:
        proc = await start_streamer("run", "--config", str(config), "--realtime", "--mqtt", broker.url, "--prefix",
                                    "test", "--control", "--scores", "--homeassistant", "--metrics", "127.0.0.1:0",
                                    "-q")  # fmt: skip
        assert proc.stderr is not None
        async with asyncio.timeout(60):
            while "metrics at " not in (line := (await proc.stderr.readline()).decode()):
                assert line, "the analyzer ended before its metrics endpoint started"
        metrics_url = line.split("metrics at ")[1].strip()
        await sub.wait_for("test/door/settings", within=60)
        assert settings(sub)["threshold"] == 0.3 and settings(sub)["enabled"] is True
        # Home Assistant: a switch and a number bound to the command topic
        switch = (await sub.wait_for("homeassistant/switch/test_door/detection/config")).json()
        number = (await sub.wait_for("homeassistant/number/test_door/threshold/config")).json()
        assert switch["command_topic"] == number["command_topic"] == "test/door/set"
        assert switch["state_topic"] == number["state_topic"] == "test/door/settings"
        assert json.loads(switch["payload_off"]) == {"enabled": False}

        await media_time_past(sub, 4.5)  # the first beep's event
        await send(broker, "test/door/set", '{"threshold": 0.6}')
        assert await result(sub, 1) == {"ok": True, "changed": ["threshold"]}
        async with aiohttp.ClientSession() as http:
            scraped = await (await http.get(metrics_url)).text()
        assert 'streamer_stream_threshold{stream="door"} 0.6' in scraped
        await media_time_past(sub, 7.5)  # the second beep: under the new threshold
        await send(broker, "test/door/set", '{"threshold": 0.3, "enabled": false}')
        assert (await result(sub, 2))["ok"]
        await sub.wait_for("test/door/status", "disabled")
        told = len(sub.on("test/door/settings"))
        await send(broker, "test/door/set", '{"threshold": 7}')
        refused = await result(sub, 3)
        assert not refused["ok"] and "threshold" in refused["error"] and "\n" not in refused["error"]
        await send(broker, "test/door/set", '{"colour": "red"}')
        assert "not a live setting" in (await result(sub, 4))["error"]
        assert len(sub.on("test/door/settings")) == told  # refused: nothing changed
        assert settings(sub)["threshold"] == 0.3 and settings(sub)["enabled"] is False
        await media_time_past(sub, 10.5)  # the third beep: detection off
        await send(broker, "test/door/set", '{"enabled": true}')
        assert (await result(sub, 5))["ok"]
        await sub.wait_for("test/door/status", "online")
        await media_time_past(sub, 13.5)  # the fourth beep: detection on again
        await send(broker, "test/door/set", '{"threshold": 0.6}')  # kept for the next run
        assert (await result(sub, 6))["ok"]
        async with asyncio.timeout(60):
            code = await proc.wait()
        assert code == 0
        starts = [e["t"] for e in sub.events("door") if e["type"] == "start"]
    assert [round(t) for t in starts] == [3, 12], sub.events("door")
    kept = json.loads((tmp_path / "site.control.json").read_text())
    assert kept == {"door": {"enabled": True, "threshold": 0.6}}

    # a restart takes the kept settings: no beep reaches 0.6
    async with subscribe(broker.host, broker.port, "test/#") as sub:
        code, _, stderr = await run_streamer("--config", str(config), "--mqtt", broker.url, "--prefix", "test",
                                             "--control", "-q")  # fmt: skip
        assert code == 0, stderr
        await sub.wait_for("test/door/settings")
    assert settings(sub)["threshold"] == 0.6
    assert sub.events("door") == []


def test_commands_are_checked_as_the_config_file() -> None:
    config = build_config({"streams": [{"source": "demo:", "name": "door", "zones": [
        {"name": "porch", "polygon": [[0, 0], [1, 0], [1, 1]]}]}]}).streams[0]  # fmt: skip
    new = changed(config, checked(config, {"zones": {"porch": 0.4}, "alpha": 0.2, "min_gap": 1.5}))
    assert live_settings(new) == {"enabled": True, "threshold": 0.3, "alpha": 0.2, "beta": 0.5, "min_gap": 1.5,
                                  "zone_threshold": 0.6, "zones": {"porch": 0.4}}  # fmt: skip
    for bad, why in (([1], "JSON object"), ({}, "JSON object"), ({"threshold": 0}, "threshold"),
                     ({"threshold": "high"}, "threshold"), ({"enabled": "yes"}, "enabled"),
                     ({"zones": {"garden": 0.5}}, "no zone 'garden'"), ({"zones": {"porch": 2}}, "porch"),
                     ({"source": "rtsp://x"}, "not a live setting"), ({"mask": []}, "not a live setting")):  # fmt: skip
        with pytest.raises(ConfigError, match=why):
            checked(config, bad)
