"""Streams joining and leaving a running analyzer (a cluster worker's shard), and model state carried over."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from pipelines.analyzer import Analyzer, Hooks
from pipelines.config import build_config
from pipelines.stages.events import Event

from .helpers import until

SOURCE = "synthetic:?events=av@1&duration={d}&realtime=0&width=320&height=180"
LIVE = "cam=synthetic:?events=v@4&length=30&duration=0&width=320&height=180"  # motion from 4 s: after the learning


def stream(name: str, duration: float = 3) -> object:
    return build_config(mqtt_flags={"url": "none"}, sources=[f"{name}={SOURCE.format(d=duration)}"]).streams[0]


@pytest.mark.parametrize("ingest", ["thread", "process"])
async def test_streams_join_and_leave_a_serving_analyzer(ingest: str) -> None:
    events: list[Event] = []
    base = build_config(mqtt_flags={"url": "none"}, sources=[f"first={SOURCE.format(d=3)}"])
    from dataclasses import replace

    config = replace(base, streams=(), ingest=ingest)
    analyzer = Analyzer(config, Hooks(on_event=events.append), serve=True)
    run = asyncio.create_task(analyzer.run())
    await asyncio.sleep(0.5)
    assert not run.done(), "a serving analyzer with no stream goes on"

    await analyzer.add_stream(base.streams[0])
    assert await until(lambda: any(e.stream == "first" and e.type == "end" for e in events), 60)
    assert await until(lambda: analyzer.streams["first"].flushed, 30)  # a stream that ended is flushed, not removed
    state = await analyzer.export_states()
    assert set(state) == {"first"}

    # a live stream, removed while it runs: its open event ends, its slot is freed
    live = build_config(mqtt_flags={"url": "none"}, sources=[LIVE]).streams[0]
    await analyzer.add_stream(live, state=state["first"])
    assert analyzer.streams["cam"].carried_over
    assert await until(lambda: any(e.stream == "cam" for e in events), 60)
    assert await until(lambda: analyzer.streams["cam"].detector.checkpoint() is not None, 30)
    moving = (await analyzer.export_states())["cam"]
    started = next(e for e in events if e.stream == "cam" and e.type == "start")

    # the stream moves to another analyzer (its worker's node was lost) with that event open: it ends there
    other_events: list[Event] = []
    other = Analyzer(config, Hooks(on_event=other_events.append), serve=True)
    other_run = asyncio.create_task(other.run())
    await other.add_stream(live, state=moving)
    assert other_events and other_events[0].type == "end" and other_events[0].id == started.id
    assert other_events[0].reason == "source lost"
    other.stop()
    await asyncio.wait_for(other_run, 30)

    analyzer.remove_stream("cam")
    assert await until(lambda: "cam" not in analyzer.streams, 30)
    ended = [e for e in events if e.stream == "cam" and e.type == "end"]
    assert len(ended) == 1, events
    assert "cam" not in analyzer.runner._slots
    assert not run.done()

    analyzer.stop()
    summary = await asyncio.wait_for(run, 30)
    assert summary.failed == ()


def test_model_state_is_carried_over() -> None:
    from pipelines.stages.inference import ModelRunner

    config = build_config(mqtt_flags={"url": "none"}, sources=[f"a={SOURCE.format(d=3)}", f"b={SOURCE.format(d=3)}"])
    runner = ModelRunner(config.model)
    a, b = config.streams
    runner.add_stream(a)
    runner.add_stream(b)
    state = runner.export_state("a")
    assert {k.split(".")[0] for k in state} == {"video", "audio", "align"}
    changed = {k: np.full_like(v, 3) for k, v in state.items()}
    runner.import_state("b", changed)
    assert all(np.array_equal(runner.export_state("b")[k], changed[k]) for k in state)
    assert all(np.array_equal(runner.export_state("a")[k], state[k], equal_nan=True) for k in state)
    wrong = dict(changed, **{"audio.levels": np.zeros((3, 3), np.float32)})
    with pytest.raises(ValueError, match=r"audio|levels"):
        runner.import_state("a", wrong)
    runner.close()


@pytest.mark.parametrize("ingest", ["thread", "process"])
async def test_a_stream_removed_during_an_event_publishes_its_end_and_snapshot(ingest: str, mqtt_broker: Any) -> None:
    from dataclasses import replace

    from .analyzer_run import subscribe

    broker = mqtt_broker()
    base = build_config(mqtt_flags={"url": broker.url, "prefix": "t"}, sources=[LIVE])
    analyzer = Analyzer(replace(base, streams=(), ingest=ingest), serve=True)
    run = asyncio.create_task(analyzer.run())
    async with subscribe(broker.host, broker.port, "t/#") as sub:
        await analyzer.add_stream(base.streams[0])
        assert await until(lambda: analyzer.streams["cam"].detector.active, 60)
        analyzer.remove_stream("cam")
        await sub.wait_for("t/cam/snapshot", within=30)
        assert [e["type"] for e in sub.events("cam", prefix="t")] == ["start", "end"]
        assert await until(lambda: "cam" not in analyzer.streams, 30)
    analyzer.stop()
    await asyncio.wait_for(run, 30)


async def test_a_stream_cannot_be_added_once_the_run_ended() -> None:
    """Before the fix the closed run's task group was kept, and the stream got as far as the model, which failed
    with "the model runner is closed" (a stream already past the model would have met the closed task group)."""
    config = build_config(mqtt_flags={"url": "none"}, sources=[f"first={SOURCE.format(d=1)}"])
    analyzer = Analyzer(config)
    summary = await asyncio.wait_for(analyzer.run(), 60)
    assert summary.timesteps > 0
    with pytest.raises(RuntimeError, match=r"^cannot add stream 'late': the analyzer is not running"):
        await analyzer.add_stream(stream("late"))  # type: ignore[arg-type]
    assert list(analyzer.streams) == ["first"]


async def test_two_adds_of_one_stream_at_once_give_one_stream_and_a_clear_error() -> None:
    """Both calls passed the check for a known id before the first awaited the model: the second then failed in
    the model's thread ("already has a slot in the model") instead of with the analyzer's own one-line error."""
    from dataclasses import replace

    base = build_config(mqtt_flags={"url": "none"}, sources=[f"twice={SOURCE.format(d=3)}"])
    analyzer = Analyzer(replace(base, streams=()), serve=True)
    run = asyncio.create_task(analyzer.run())
    sc = base.streams[0]
    first, second = await asyncio.gather(analyzer.add_stream(sc), analyzer.add_stream(sc), return_exceptions=True)
    assert first is None
    assert isinstance(second, ValueError) and str(second) == "stream 'twice' is already analyzed"
    assert list(analyzer.streams) == ["twice"] and list(analyzer.runner._slots) == ["twice"]
    analyzer.stop()
    summary = await asyncio.wait_for(run, 30)
    assert summary.failed == ()
