"""``streamer run`` end to end, as users run it: a real subprocess on a generated clip, the synthetic source and
a real RTSP server, publishing to a real mosquitto.

The clip (tests/burst_clip.py) has a burst of motion and sound at 4 s, sound alone at 9 s and motion alone at
14 s, 1 s each. Weighting only video must find 4 and 14, only audio 4 and 9, both with a high threshold only 4.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from .analyzer_run import intervals, read_events, retained, run_streamer, start_streamer, subscribe
from .burst_clip import make_burst_clip

HOP = 0.1
WEIGHTINGS: dict[str, tuple[tuple[str, ...], list[float]]] = {
    # name: (flags, burst starts expected)
    "video": (("--alpha", "1", "--beta", "0"), [4.0, 14.0]),
    "audio": (("--alpha", "0", "--beta", "1"), [4.0, 9.0]),
    "both": (("--alpha", "0.5", "--beta", "0.5", "--threshold", "0.75"), [4.0]),
}
STREAM_KEYS = {"--alpha": "alpha", "--beta": "beta", "--threshold": "threshold"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_burst_clip(tmp_path_factory.mktemp("clips") / "bursts.mkv")


def assert_bursts(found: list[tuple[float, float]], starts: list[float], what: str) -> None:
    assert len(found) == len(starts), f"{what}: events {found}, expected bursts at {starts}"
    for (start, end), burst in zip(found, starts, strict=True):
        assert abs(start - burst) <= HOP + 1e-6, f"{what}: event {start}-{end} should start at {burst}"
        assert abs(end - (burst + 1.0)) <= 0.5, f"{what}: event {start}-{end} should end near {burst + 1}"


def stream_table(name: str, source: str, flags: tuple[str, ...]) -> str:
    lines = ["[[streams]]", f'name = "{name}"', f'source = "{source}"']
    lines += [f"{STREAM_KEYS[flag]} = {value}" for flag, value in zip(flags[::2], flags[1::2], strict=True)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("weighting", list(WEIGHTINGS))
async def test_events_from_a_file(clip: Path, tmp_path: Path, weighting: str) -> None:
    flags, starts = WEIGHTINGS[weighting]
    out = tmp_path / "events.jsonl"
    code, stdout, stderr = await run_streamer(str(clip), "--mqtt", "none", "--events-out", str(out), *flags)
    assert code == 0, stderr
    events = read_events(out)
    assert_bursts(intervals(events), starts, weighting)
    assert [e["type"] for e in events] == ["start", "end"] * len(starts)
    assert stdout.count("START") == len(starts) and stdout.count("END") == len(starts)


async def test_four_streams_at_once_give_the_events_of_each_alone(clip: Path, tmp_path: Path) -> None:
    synthetic = "synthetic:?realtime=0&width=320&height=180"
    config = "".join(stream_table(name, str(clip), flags) for name, (flags, _) in WEIGHTINGS.items())
    config += stream_table("synth", synthetic, WEIGHTINGS["audio"][0])
    (tmp_path / "four.toml").write_text(config)
    together = tmp_path / "together.jsonl"
    code, _, stderr = await run_streamer("--config", str(tmp_path / "four.toml"), "--mqtt", "none",
                                         "--events-out", str(together), "-q")  # fmt: skip
    assert code == 0, stderr
    events = read_events(together)
    for name, (_, starts) in WEIGHTINGS.items():
        assert_bursts(intervals(events, name), starts, name)
    assert_bursts(intervals(events, "synth"), WEIGHTINGS["audio"][1], "synthetic")

    alone = tmp_path / "alone.jsonl"
    code, _, stderr = await run_streamer(f"synth={synthetic}", *WEIGHTINGS["audio"][0], "--mqtt", "none",
                                         "--events-out", str(alone), "-q")  # fmt: skip
    assert code == 0, stderr
    assert intervals(read_events(alone)) == intervals(events, "synth")  # batching changes nothing


async def test_the_mqtt_contract(clip: Path, mqtt_broker: Any) -> None:
    broker = mqtt_broker()
    async with subscribe(broker.host, broker.port) as sub:
        code, _, stderr = await run_streamer(
            f"door={clip}", "--mqtt", broker.url, "--prefix", "test", "--scores", "--stats-interval", "0.5",
            "--alpha", "0", "--beta", "1",
        )  # fmt: skip
        assert code == 0, stderr
        await sub.wait_for("test/status", "offline", within=10)
    events = sub.events("door")
    assert [e["type"] for e in events] == ["start", "end", "start", "end"]
    assert len({(e["id"], e["type"]) for e in events}) == 4  # each event id once per message type
    start, end = events[:2]
    assert set(start) == {"type", "id", "stream", "t", "wall_time", "score", "s_v", "s_a", "alpha", "beta", "box"}
    assert set(end) >= set(start) | {"start_t", "duration", "peak"} and end["id"] == start["id"]
    assert start["stream"] == "door" and (start["alpha"], start["beta"]) == (0, 1) and start["score"] >= 0.5
    assert end["start_t"] == start["t"] and end["duration"] == pytest.approx(end["t"] - end["start_t"], abs=1e-3)
    scores = [m.json() for m in sub.on("test/door/scores")]
    assert len(scores) == 200 and set(scores[0]) == {"t", "score", "s_v", "s_a"}
    assert [s["t"] for s in scores] == sorted(s["t"] for s in scores)
    assert sub.payloads("test/status")[0] == "online" and sub.payloads("test/status")[-1] == "offline"
    assert sub.payloads("test/door/status")[-1] == "ended"
    stats = sub.on("test/stats")[-1].json()
    assert stats["device"] == "cpu" and stats["streams"]["door"]["timesteps"] == 200
    assert {"sync", "batch", "model", "publish", "total"} <= set(stats["latency_ms"])
    assert set(stats["latency_ms"]["model"]) == {"p50", "p99"} and stats["batch"]["count"] > 0
    assert stats["outbox"]["overflow"] == 0

    kept = await retained(broker.host, broker.port)
    assert kept["test/status"] == b"offline" and kept["test/door/status"] == b"ended"
    assert kept["test/door/snapshot"][:3] == b"\xff\xd8\xff"  # a JPEG
    assert not any(topic.endswith(("/events", "/scores")) for topic in kept)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_offline_on_sigterm_and_by_the_will_on_sigkill(mqtt_broker: Any, how: str) -> None:
    broker = mqtt_broker()
    async with subscribe(broker.host, broker.port) as sub:
        proc = await start_streamer("run", "synthetic:?duration=0", "--mqtt", broker.url, "--prefix", "test", "-q")
        await sub.wait_for("test/synthetic/status", "online")
        proc.send_signal(getattr(signal, how))
        async with asyncio.timeout(10):
            code = await proc.wait()
        await sub.wait_for("test/status", "offline", within=10)
    assert code == (0 if how == "SIGTERM" else -signal.SIGKILL)
    kept = await retained(broker.host, broker.port)
    assert kept["test/status"] == b"offline"
    if how == "SIGTERM":
        assert kept["test/synthetic/status"] == b"offline"


async def test_events_wait_in_the_outbox_while_the_broker_is_away(mqtt_broker: Any, tmp_path: Path) -> None:
    # The broker saves sessions to disk, so our subscriber's persistent session survives its crash and the broker
    # keeps what the analyzer delivers after reconnecting until the subscriber is back (no race between them).
    saved = ["persistence true", f"persistence_location {tmp_path}/", "autosave_interval 1", "autosave_on_changes true"]
    broker = mqtt_broker(extra_config=saved)
    async with subscribe(broker.host, broker.port, identifier="outage-test"):
        pass
    source = "synthetic:?events=av@2,av@4&duration=10"
    proc = await start_streamer("run", source, "--mqtt", broker.url, "--prefix", "test", "-q")
    await asyncio.sleep(1.0)
    broker.kill()  # before the first burst
    await asyncio.sleep(5.0)  # both bursts happen while it is away
    broker.start()
    async with asyncio.timeout(30):
        code = await proc.wait()
    async with subscribe(broker.host, broker.port, identifier="outage-test") as sub:
        await sub.wait_for("test/status", "offline", within=10)
    assert code == 0
    events = sub.events("synthetic")
    assert [(e["type"], e["t"]) for e in events][::2] == [("start", 2.0), ("start", 4.0)]
    assert [e["type"] for e in events] == ["start", "end", "start", "end"]
    assert len({(e["id"], e["type"]) for e in events}) == 4  # each event id once per message type


async def test_events_over_rtsp(clip: Path, tmp_path: Path, rtsp_server: Any) -> None:
    server = rtsp_server(file=clip)
    config = "".join(stream_table(name, server.url, flags) for name, (flags, _) in WEIGHTINGS.items())
    (tmp_path / "rtsp.toml").write_text(config)
    out = tmp_path / "events.jsonl"
    code, _, stderr = await run_streamer("--config", str(tmp_path / "rtsp.toml"), "--mqtt", "none", "--events-out",
                                         str(out), "--duration", "17", "-q")  # fmt: skip
    assert code == 0, stderr
    events = read_events(out)
    for name, (_, starts) in WEIGHTINGS.items():
        assert_bursts(intervals(events, name), starts, f"rtsp {name}")


async def test_demo_shows_events(tmp_path: Path) -> None:
    """The README's run command, on a port where no broker runs: it starts its own and shows the events."""
    from pipelines.bench.mosquitto import free_port

    proc = await start_streamer("demo", "--mqtt", f"mqtt://127.0.0.1:{free_port()}", "--duration", "6")
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(90):
        async for raw in proc.stdout:
            lines.append(raw.decode())
        await proc.wait()
    text = "".join(lines)
    assert proc.returncode == 0, text
    assert "started an embedded one (amqtt)" in text
    assert any("START" in line and "t=   4.00 s" in line for line in lines), text
    assert "done: 1 event(s) received over MQTT" in text


async def test_a_file_stopped_by_sigint_says_offline_and_one_cut_at_its_duration_ended(
    clip: Path, mqtt_broker: Any
) -> None:
    """A file's retained status stayed ``online`` after Ctrl-C (only live streams got ``offline``), and after
    ``--duration`` (no stream got ``ended``): a dashboard showed a stream nobody analyzes as online."""
    broker = mqtt_broker()
    async with subscribe(broker.host, broker.port) as sub:
        proc = await start_streamer("run", f"door={clip}", "--realtime", "--mqtt", broker.url, "--prefix", "test",
                                    "-q")  # fmt: skip
        await sub.wait_for("test/door/status", "online")
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            code = await proc.wait()
        await sub.wait_for("test/status", "offline", within=10)
    assert code == 0
    assert (await retained(broker.host, broker.port))["test/door/status"] == b"offline"

    code, _, stderr = await run_streamer(f"door={clip}", "--duration", "2", "--mqtt", broker.url, "--prefix", "test")
    assert code == 0, stderr
    assert (await retained(broker.host, broker.port))["test/door/status"] == b"ended"


async def test_a_realtime_file_waits_in_the_batcher_as_little_as_a_live_source(clip: Path, mqtt_broker: Any) -> None:
    """A file read with --realtime brings one timestep a hop, like a live source. The batcher waited up to its
    file wait (50 ms) for 16 of them, on every timestep: the batch stage's median was half a hop. It must stay at
    the order of max_wait_ms (5): well under a quarter hop whatever the machine."""
    broker = mqtt_broker()
    async with subscribe(broker.host, broker.port) as sub:
        code, _, stderr = await run_streamer(f"door={clip}", "--realtime", "--duration", "3", "--mqtt", broker.url,
                                             "--prefix", "test", "--stats-interval", "600", "-q")  # fmt: skip
        assert code == 0, stderr
        await sub.wait_for("test/status", "offline", within=10)
    stats = sub.on("test/stats")[-1].json()  # the last report, at the end: every timestep of the run
    assert stats["streams"]["door"]["timesteps"] == 30
    assert stats["latency_ms"]["batch"]["p50"] < 1000 * HOP / 4, stats["latency_ms"]
