"""Faults with real processes: RTSP server killed and restarted, a stalled camera, a model slower than real
time, a full outbox, and bad input next to good streams. Every other stream keeps running."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from streamer.errors import EXIT_NOT_OPENED

from .analyzer_run import run_streamer, start_streamer, subscribe
from .burst_clip import make_burst_clip
from .media import make_clip, make_random_bytes, truncate


async def test_rtsp_server_killed_and_restarted_5_s_later(tmp_path: Path, rtsp_server: Any, mqtt_broker: Any) -> None:
    clip = make_burst_clip(tmp_path / "bursts.mkv", events="av@3", duration=60)
    server = rtsp_server(file=clip)
    broker = mqtt_broker()
    async with subscribe(broker.host, broker.port) as sub:
        proc = await start_streamer("run", f"cam={server.url}", "synthetic:?duration=0&events=av@12",
                                    "--mqtt", broker.url, "--prefix", "test", "--scores", "-q")  # fmt: skip
        await sub.wait_for("test/cam/events", within=60)  # the burst at 3 s, before the outage
        await asyncio.sleep(1.0)
        server.kill()
        await sub.wait_for("test/cam/status", "reconnecting", within=30)
        await asyncio.sleep(5.0)
        server.start()  # plays the clip from its start again: a burst 3 s after reconnecting
        async with asyncio.timeout(60):
            while len(sub.events("cam")) < 4:
                await sub.wait_for("test/cam/events", within=60)
                await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            code = await proc.wait()
    assert code == 0
    statuses = sub.payloads("test/cam/status")
    assert statuses[:1] == ["online"] and "reconnecting" in statuses
    assert statuses[statuses.index("reconnecting") :].count("online") >= 1  # back online after the restart
    events = sub.events("cam")
    starts = [e["t"] for e in events if e["type"] == "start"]
    assert len(starts) == 2 and starts[1] >= starts[0] + 5 + 3  # the outage shows as a gap, never a step back
    times = [m.json()["t"] for m in sub.on("test/cam/scores")]
    assert times == sorted(times) and len(set(times)) == len(times)  # the timeline stays monotonic
    assert sub.events("synthetic")  # the other stream went on throughout


async def test_a_stalled_camera_is_detected_and_reconnected(rtsp_server: Any, mqtt_broker: Any) -> None:
    server = rtsp_server()
    broker = mqtt_broker()
    async with subscribe(broker.host, broker.port) as sub:
        proc = await start_streamer("run", f"cam={server.url}", "--stall-timeout", "2", "--mqtt", broker.url,
                                    "--prefix", "test", "-q")  # fmt: skip
        await sub.wait_for("test/cam/status", "online", within=60)
        server.pause()  # connected, but nothing comes any more
        await sub.wait_for("test/cam/status", "reconnecting", within=30)
        server.resume()
        server.restart()
        async with asyncio.timeout(60):
            while sub.payloads("test/cam/status").count("online") < 2:
                await sub.wait_for("test/cam/status", "online")
                await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await proc.wait() == 0


async def test_a_model_slower_than_real_time_drops_counted_timesteps_and_stays_bounded(
    tmp_path: Path, mqtt_broker: Any
) -> None:
    broker = mqtt_broker()
    (tmp_path / "slow.toml").write_text('[model]\nvideo = "tests.slow_encoder:SlowVideo"\nmax_batch = 1\n')
    async with subscribe(broker.host, broker.port) as sub:
        config = str(tmp_path / "slow.toml")
        proc = await start_streamer("run", "synthetic:?duration=0", "--config", config, "--mqtt", broker.url,
                                    "--prefix", "test", "--stats-interval", "1", "-q")  # fmt: skip
        async with asyncio.timeout(60):
            while True:
                await sub.wait_for("test/stats")
                stats = sub.on("test/stats")[-1].json()["streams"]["synthetic"]
                if stats["dropped_timesteps"] >= 20:
                    break
                await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0
    reports = [m.json()["streams"]["synthetic"] for m in sub.on("test/stats")]
    # the model scores about half the timesteps; the rest are dropped and counted, never queued without bound
    last = reports[-1]
    assert last["dropped_timesteps"] > 0 and last["timesteps"] > 0
    assert last["dropped_timesteps"] + last["timesteps"] <= round(last["media_t"] * 10) + 16 + 1


async def test_a_full_outbox_drops_the_oldest_events_and_reports_it(tmp_path: Path, mqtt_broker: Any) -> None:
    broker = mqtt_broker(start=False)  # the broker is away for the whole analysis
    (tmp_path / "small.toml").write_text("[mqtt]\noutbox_size = 2\n")
    proc = await start_streamer("run", "synthetic:?events=av@1,av@3,av@5&duration=7", "--config",
                                str(tmp_path / "small.toml"), "--mqtt", broker.url, "--prefix", "test",
                                "--stats-interval", "600")  # fmt: skip
    # The count is logged once the stream has ended, before the outbox gets 3 s to flush: then the broker comes
    # (waiting for the line, not for wall-clock seconds, so a slow start cannot let events through early).
    assert proc.stderr is not None
    before = []
    async with asyncio.timeout(60):
        while not (before and "dropped so far" in before[-1]):
            line = (await proc.stderr.readline()).decode()
            assert line, "".join(before)
            before.append(line)
    broker.start()
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert proc.returncode == 0
    text = "".join(before) + err.decode()
    assert "4 event(s) dropped so far: the outbox was full" in text, text
    kept = [line for line in text.splitlines() if "not delivered" in line]
    assert not kept, text  # the two newest were delivered after the broker came


async def test_bad_inputs_fail_alone_with_one_line_each(tmp_path: Path) -> None:
    whole = make_clip(tmp_path / "whole.mkv", duration=4.0)
    truncated = truncate(whole, tmp_path / "cut.mkv", 0.5)
    noise = make_random_bytes(tmp_path / "noise.mp4")
    audio_only = make_clip(tmp_path / "voice.mkv", duration=2.0, with_video=False)
    # Matroska names codecs in clear: renamed, no decoder exists for either track
    odd = tmp_path / "odd.mkv"
    odd.write_bytes(whole.read_bytes().replace(b"V_MPEG4/ISO/AVC", b"V_UNKNOWN/X/ZZZ").replace(b"A_AAC", b"A_ZZZ"))
    code, _, err = await run_streamer(
        str(tmp_path / "missing.mp4"), str(truncated), str(noise), str(audio_only), str(odd),
        "synthetic:?realtime=0&duration=4&events=av@2", "--mqtt", "none", "--events-out", str(tmp_path / "e.jsonl"),
    )  # fmt: skip
    assert code == 3
    errors = [line for line in err.splitlines() if line.startswith("streamer: error:")]
    assert len(errors) == 4, err
    assert any("stream 'missing'" in line and "no such file" in line for line in errors)
    assert any("stream 'cut'" in line and "truncated" in line for line in errors)
    assert any("stream 'noise'" in line for line in errors)
    assert any("stream 'odd'" in line and "unsupported codec" in line for line in errors)
    assert "Traceback" not in err
    assert (tmp_path / "e.jsonl").read_text().count('"type": "end"') == 1  # the synthetic stream's event
    assert "1 event(s)" in err and "4 stream(s) failed" in err


async def test_a_source_that_never_comes_back_goes_offline_and_is_retried(mqtt_broker: Any) -> None:
    from pipelines.bench.mosquitto import free_port

    broker = mqtt_broker()
    async with subscribe(broker.host, broker.port) as sub:
        proc = await start_streamer("run", f"gone=rtsp://127.0.0.1:{free_port()}/cam", "--mqtt", broker.url,
                                    "--prefix", "test")  # fmt: skip
        await sub.wait_for("test/gone/status", "offline", within=60)
        assert proc.stderr is not None
        retries_before = 0
        async with asyncio.timeout(60):  # still retrying after going offline
            while retries_before < 6:
                line = (await proc.stderr.readline()).decode()
                retries_before += "retrying in" in line
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await proc.wait() == EXIT_NOT_OPENED  # stopped while it never opened: not a quiet success
    assert sub.payloads("test/gone/status")[:1] == ["reconnecting"]
    assert sub.payloads("test/gone/status")[-1] == "offline"


def test_reconnect_backoff_doubles_is_jittered_and_capped() -> None:
    import random

    from streamer.source import backoff_delay

    rng = random.Random(1)
    delays = [[backoff_delay(attempt, 0.5, 30.0, rng) for attempt in range(1, 12)] for _ in range(200)]
    for attempt, base in enumerate([0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30, 30]):
        column = [d[attempt] for d in delays]
        assert base * 0.75 <= min(column) and max(column) <= base * 1.25  # +-25% around the capped doubling
        assert max(column) - min(column) > 0.2 * base  # and really jittered: clients do not retry in lockstep
