"""The test fixtures themselves: the mosquitto broker and the RTSP server's file mode."""

from __future__ import annotations

import asyncio
from pathlib import Path
from subprocess import PIPE

import aiomqtt
import pytest

from streamer.media import Timestep
from streamer.options import SourceOptions
from streamer.spec import parse_source
from streamer.stream import Stream

from .conftest import MqttBrokers, RtspServers
from .media import make_clip


async def _retained(host: str, port: int, topic: str) -> bytes | None:
    """The retained message on ``topic``, or None when the broker has none (nothing within 0.5 s)."""
    async with aiomqtt.Client(host, port, timeout=5) as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(0.5):
                async for message in client.messages:
                    assert message.retain
                    return bytes(message.payload) if isinstance(message.payload, bytes | bytearray) else None
        except TimeoutError:
            return None
    return None


async def test_mqtt_broker_round_trips_and_survives_kill_and_restart(mqtt_broker: MqttBrokers) -> None:
    broker = mqtt_broker()
    # (tuples: mypy would narrow a bare ``assert broker.running`` for the rest of the test)
    assert (broker.running, broker.url, broker.host) == (True, f"mqtt://127.0.0.1:{broker.port}", "127.0.0.1")

    async with aiomqtt.Client(broker.host, broker.port, timeout=5) as client:
        await client.publish("streamer/test/state", b"online", qos=1, retain=True)
    assert await _retained(broker.host, broker.port, "streamer/test/state") == b"online"

    # the command-line clients see it too
    sub = ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-t", "streamer/test/#", "-C", "1", "-W", "5"]
    proc = await asyncio.create_subprocess_exec(*sub, stdout=PIPE, stderr=PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert (proc.returncode, out) == (0, b"online\n"), err

    # a crash drops connected clients; the same port serves again after a start, without the retained message
    # (persistence is off)
    async with aiomqtt.Client(broker.host, broker.port, timeout=5) as client:
        await client.subscribe("streamer/test/#")
        await asyncio.to_thread(broker.kill)
        assert (broker.running,) == (False,)
        with pytest.raises(aiomqtt.MqttError):
            async with asyncio.timeout(5):
                async for _ in client.messages:
                    pass
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(broker.host, broker.port, timeout=2):
            pass
    await asyncio.to_thread(broker.start)
    assert await _retained(broker.host, broker.port, "streamer/test/state") is None
    async with aiomqtt.Client(broker.host, broker.port, timeout=5) as client:
        await client.publish("streamer/test/state", b"back", qos=1, retain=True)
    await asyncio.to_thread(broker.restart)
    assert (broker.running,) == (True,)
    assert await _retained(broker.host, broker.port, "streamer/test/state") is None


def test_mqtt_broker_reports_a_bad_config(mqtt_broker: MqttBrokers) -> None:
    broker = mqtt_broker(extra_config=["no_such_option true"], start=False)
    with pytest.raises(RuntimeError, match="no_such_option"):
        broker.start()
    assert not broker.running


@pytest.mark.rtsp
async def test_rtsp_server_serves_a_file_in_real_time(rtsp_server: RtspServers, tmp_path: Path) -> None:
    # a key frame every 1/3 s: a client that joins (or loses its first packets) gets a picture soon
    clip = make_clip(tmp_path / "clip.mkv", duration=3.0, audio_codec="libopus", bframes=False, keyint=10)
    server = rtsp_server(file=clip)
    stream = Stream(parse_source(server.url), SourceOptions(reconnect=False, fail_fast=True))
    steps: list[Timestep] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(15):
        async for ts in stream:
            steps.append(ts)
            if ts.t >= 2.5:
                break
    elapsed = loop.time() - started

    assert steps and steps[-1].t >= 2.5
    assert steps[0].t < 0.2, "a file served from its start begins at media time 0"
    assert elapsed >= 2.0, "the server paces the file in real time"
    # FFmpeg's live options (fflags=nobuffer) drop the packets it probed the stream with, ~0.5 s: audio starts
    # there, video at the next key frame (2/3 s). From then on every timestep has both.
    complete = [not (ts.video_missing or ts.audio_missing) for ts in steps]
    first = complete.index(True) if True in complete else len(steps)
    report = [(ts.k, ts.video_missing, ts.audio_missing) for ts in steps]
    assert first < len(steps) and steps[first].t <= 1.0, report
    assert all(complete[first:]), report
    assert sum(complete) >= len(steps) / 2, report
