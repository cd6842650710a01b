"""Tags: what an event heard, named after its start (``pipelines.stages.tagging``), end to end with a real
mosquitto on real recordings (``../shared/realworld``): a talking head's event is tagged ``speech`` in an ``update``
message and on its label's topic (ON, then OFF when it has ended), a road's loud non-speech sounds are not, Home
Assistant gets a binary sensor per stream for the label, and ``--no-speech-tags`` leaves the messages as before."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.speech import SpeechDetector, speech_confidence
from pipelines.config import TagsConfig
from pipelines.stages.events import Event
from pipelines.stages.tagging import QUEUE, Request, Tag, Tagger, Tagging
from tests.analyzer_run import read_events, run_streamer, subscribe

REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "realworld"
TALKING = REALWORLD / "D6_grid_bbaf2n.mp4"  # a talking head says one sentence
ROAD = REALWORLD / "D2_road_wind.mp4"  # a siren, ducks, thunder, a rooster and a cow over wind, on a busy road


def needs_clips() -> None:
    if not (TALKING.exists() and ROAD.exists()):
        pytest.skip(f"the real-world clips are not here ({REALWORLD})")


async def test_speech_is_tagged_after_the_start_and_other_sounds_are_not(tmp_path: Path, mqtt_broker: Any) -> None:
    needs_clips()
    broker = mqtt_broker()
    out = tmp_path / "events.jsonl"
    async with subscribe(broker.host, broker.port, "#") as sub:
        # the talking head as a live stream would come (its event is tagged while it lasts), the road at once
        code, _, err = await run_streamer(f"talk={TALKING}", "--realtime", "--mqtt", broker.url, "--prefix", "test",
                                          "--homeassistant", "--events-out", str(out), "-q")  # fmt: skip
        assert code == 0, err
        code, _, err = await run_streamer(f"road={ROAD}", "--mqtt", broker.url, "--prefix", "test",
                                          "--events-out", str(out), "-q")  # fmt: skip
        assert code == 0, err
        await asyncio.sleep(0.5)  # the last messages reach the subscriber
    messages = read_events(out)
    talk = [m for m in messages if m["stream"] == "talk"]
    updates = [m for m in talk if m["type"] == "update"]
    assert updates and all(m["id"] in {e["id"] for e in talk if e["type"] == "start"} for m in updates)
    speech = [t for m in updates for t in m["tags"] if t["label"] == "speech"]
    assert speech and all(0.5 <= t["confidence"] <= 1 and t["modality"] == "audio" for t in speech), updates
    # the start is never held for its tags: no start carries any
    assert all("tags" not in m for m in messages if m["type"] == "start")
    road = [m for m in messages if m["stream"] == "road"]
    assert len([m for m in road if m["type"] == "end"]) >= 4  # the loud sounds were events
    assert not any(t["label"] == "speech" for m in road for t in m.get("tags", [])), road
    assert all(isinstance(m["tags"], list) for m in messages if m["type"] == "end")
    # over MQTT: the update on the events topic, the label's state ON then OFF (retained), the sensor
    on_events = [json.loads(m.payload) for m in sub.on("test/talk/events")]
    assert any(m["type"] == "update" and m["tags"] for m in on_events)
    states = [json.loads(m.payload)["state"] for m in sub.on("test/talk/tags/speech")]
    assert states[0] == "ON" and states[-1] == "OFF", states
    assert not sub.on("test/road/tags/speech")
    config = sub.on("homeassistant/binary_sensor/test_talk/tag_speech/config")
    assert config, [m.topic for m in sub.messages if m.topic.startswith("homeassistant/")]
    entity = json.loads(config[-1].payload)
    assert entity["state_topic"] == "test/talk/tags/speech" and entity["device_class"] == "sound"
    assert entity["name"] == "Speech" and entity["value_template"] == "{{ value_json.state }}"


async def test_speech_tags_off(tmp_path: Path) -> None:
    needs_clips()
    out = tmp_path / "events.jsonl"
    code, _, err = await run_streamer(f"talk={TALKING}", "--mqtt", "none", "--no-speech-tags", "--events-out",
                                      str(out), "-q")  # fmt: skip
    assert code == 0, err
    messages = read_events(out)
    assert messages and all(m["type"] != "update" and "tags" not in m for m in messages)


def test_speech_against_its_bed() -> None:
    """A talking head's sentence is speech; the same sentence over a bed of the same voice talking on is not the
    event's own speech; a tone is not speech."""
    needs_clips()
    import av

    with av.open(str(TALKING)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16_000)
        parts = [g.to_ndarray()[0] for f in container.decode(audio=0) for g in resampler.resample(f)]
    voice = np.concatenate(parts).astype(np.float32)[8000:32000]  # 0.5-2 s: the sentence
    tone = (0.3 * np.sin(2 * np.pi * 700 * np.arange(24000) / 16_000)).astype(np.float32)
    vad = SpeechDetector()
    said, beep, bed = vad.probabilities([voice, tone, voice])
    assert speech_confidence(said, None) >= 0.6
    assert speech_confidence(beep, None) == 0.0
    assert speech_confidence(said, bed) < 0.2


class _Slow(Tagger):
    """A tagger that takes CPU time: the budget must hold the stage back."""

    def tag(self, requests: list[Request]) -> list[list[Tag]]:
        end = time.thread_time() + 0.02 * len(requests)
        while time.thread_time() < end:
            pass
        return [[Tag("thing", 0.9, "audio")] for _ in requests]


async def test_the_budget_and_the_queue_bound_the_tagging() -> None:
    """Past its budget the stage waits; the queue keeps at most QUEUE requests, dropping the oldest; an event's
    tags reach ``tell`` once, with its label."""
    told: list[tuple[str, list[str]]] = []
    stage = Tagging(TagsConfig(budget=0.01), [_Slow()], lambda e, tags: told.append((e.id, sorted(tags))))
    stage._tokens = 0.0  # nothing saved up
    rate = 16_000
    for i in range(QUEUE + 10):
        event = Event(
            type="start",
            id=f"e{i}",
            stream="s",
            t=float(i),
            wall_time=0.0,
            score=1.0,
            s_v=None,
            s_a=1.0,
            alpha=0.5,
            beta=0.5,
        )
        stage.started(event)
        tagged = stage._open[event.id]
        tagged.sound, tagged.sound_s = [np.zeros(rate, np.float32)], 1.0
        stage._ask(tagged)
    assert stage.drops == 10 and len(stage._queue) == QUEUE
    task = asyncio.create_task(stage.run())
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # with no tokens at 0.01 core a second, the first batch waits: nothing more than one batch is tagged in 1 s
    assert stage.tagged <= QUEUE
    assert all(labels == ["thing"] for _, labels in told)


async def test_the_tagging_thread_yields_to_the_analysis() -> None:
    """Its thread runs at the lowest priority: a box at its capacity of live streams keeps the cores for the
    capture and the model (with the thread at the analyzer's priority, 40 live streams fell behind in `bench
    capacity` where 44 kept up without tags)."""
    import os
    import threading

    stage = Tagging(TagsConfig(), [], lambda e, tags: None)
    try:
        nice = stage._executor.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
    finally:
        stage._executor.shutdown()
    assert nice == 19


async def test_files_alone_get_every_events_tags_without_the_budget() -> None:
    """A run of files alone (nothing live to fall behind) tags every event at once, however far past its budget:
    with the budget, a file analyzed 20x faster than real time lost 2 of its 18 speech events' tags."""
    stage = Tagging(TagsConfig(budget=0.001), [_Slow()], lambda e, tags: None, live=False)
    stage._tokens = -10.0  # far past the budget
    for i in range(8):
        event = Event(type="start", id=f"e{i}", stream="s", t=float(i), wall_time=0.0, score=1.0, s_v=None, s_a=1.0,
                      alpha=0.5, beta=0.5)  # fmt: skip
        stage.started(event)
        tagged = stage._open[event.id]
        tagged.sound, tagged.sound_s = [np.zeros(16_000, np.float32)], 1.0
        stage._ask(tagged)
    task = asyncio.create_task(stage.run())
    await stage.drain(5.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stage.tagged == 8 and stage.drops == 0
