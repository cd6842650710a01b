"""Prometheus ``/metrics`` scraped from a running ``streamer run`` and parsed with prometheus-client's parser."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from pipelines.bench.mosquitto import free_port

from .analyzer_run import start_streamer

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> tuple[str, Samples]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        text = await response.text()
        content_type = response.headers["Content-Type"]
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return content_type, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_metrics_move_during_a_run(tmp_path: Path, mqtt_broker: Any) -> None:
    broker = mqtt_broker()
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    proc = await start_streamer(
        "run", "cam=synthetic:?events=av@2,a@5&duration=30", "door=synthetic:?events=v@25&duration=30",
        "--mqtt", broker.url, "--prefix", "test", "--metrics", f"127.0.0.1:{port}", "-q",
    )  # fmt: skip
    try:
        first: Samples | None = None
        async with asyncio.timeout(60):
            while True:
                try:
                    content_type, first = await scrape(url)
                    if all(value(first, "streamer_stream_timesteps_total", stream=s) > 0 for s in ("cam", "door")):
                        break
                except (aiohttp.ClientError, KeyError):
                    pass
                await asyncio.sleep(0.2)
        assert content_type.startswith("text/plain")
        async with asyncio.timeout(60):  # both events of cam have started
            while True:
                _, second = await scrape(url)
                if value(second, "streamer_stream_events_total", stream="cam") >= 2:
                    break
                await asyncio.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]

    for stream in ("cam", "door"):
        for counter in ("streamer_stream_timesteps_total", "streamer_stream_frames_total"):
            assert value(second, counter, stream=stream) > value(first, counter, stream=stream) > 0
        assert value(second, "streamer_stream_status", stream=stream, streamer_stream_status="online") == 1
        assert value(second, "streamer_stream_status", stream=stream, streamer_stream_status="offline") == 0
        assert 20 < value(second, "streamer_stream_input_fps", stream=stream) < 40  # 30 fps, real time
        assert value(second, "streamer_stream_dropped_timesteps_total", stream=stream) == 0
    assert value(second, "streamer_stream_events_total", stream="door") == 0
    # histograms: cumulative buckets that fill, with a count per scored timestep
    timesteps = sum(value(second, "streamer_stream_timesteps_total", stream=s) for s in ("cam", "door"))
    for stage in ("sync", "batch", "model", "publish", "total"):
        count = value(second, "streamer_stage_latency_seconds_count", stage=stage)
        assert count > value(first, "streamer_stage_latency_seconds_count", stage=stage)
        assert abs(count - timesteps) <= 2 * 64  # observed as each timestep is published
        buckets = sorted(
            (float(dict(labels)["le"]), v)
            for (name, labels), v in second.items()
            if name == "streamer_stage_latency_seconds_bucket" and dict(labels)["stage"] == stage
        )
        assert [v for _, v in buckets] == sorted(v for _, v in buckets) and buckets[-1][1] == count
    assert value(second, "streamer_batch_size_count") > 0
    assert value(second, "streamer_mqtt_connected") == 1
    assert value(second, "streamer_outbox_overflow_total") == 0
    assert value(second, "streamer_model_info", device="cpu") == 1
    assert value(second, "process_resident_memory_bytes") > 0


def test_a_reconnect_is_an_online_source_lost_not_each_retry() -> None:
    from types import SimpleNamespace

    from pipelines.outputs.metrics import Metrics
    from streamer.media import SourceState as S

    metrics = Metrics(SimpleNamespace(stream_counts=dict))  # type: ignore[arg-type]
    for state in (S.ONLINE, S.RECONNECTING, S.RECONNECTING, S.OFFLINE, S.ONLINE, S.RECONNECTING, S.ONLINE):
        metrics.state("cam", state)
    metrics.state("door", S.RECONNECTING)  # never online yet: a camera that is not there
    assert metrics.reconnects == {"cam": 2}
