"""The event detector, the batcher and the outbox: the pipeline's logic, on hand-made inputs."""

from __future__ import annotations

import asyncio

import pytest

from pipelines.config import EventOptions
from pipelines.stages.batcher import Batcher
from pipelines.stages.events import Ended, Event, EventDetector, Scores
from pipelines.stages.outbox import Message, Outbox

HOP = 0.1


def feed(detector: EventDetector, values: list[float]) -> list[Event]:
    out: list[Event] = []
    for k, s in enumerate(values):
        messages = detector.update(Scores(t=k * HOP, hop=HOP, score=s, s_v=s, s_a=s / 2))
        out += [m.event if isinstance(m, Ended) else m for m in messages]
    out += [m.event if isinstance(m, Ended) else m for m in detector.flush()]
    return out


def test_start_at_threshold_end_after_the_gap_with_end_time_at_the_drop() -> None:
    detector = EventDetector("s", EventOptions(threshold=0.5, min_gap=0.3), 0.5, 0.5)
    values = [0, 0, 0.6, 0.9, 0.7, 0.2, 0.1, 0, 0, 0]
    events = feed(detector, values)
    assert [e.type for e in events] == ["start", "end"]
    start, end = events
    assert start.t == pytest.approx(0.2) and start.score == 0.6 and start.id == end.id
    assert end.start_t == pytest.approx(0.2) and end.t == pytest.approx(0.5) and end.duration == pytest.approx(0.3)
    assert end.peak is not None and end.peak.t == pytest.approx(0.3) and end.peak.score == 0.9
    assert end.contributions == pytest.approx((0.5 * (0.6 + 0.9 + 0.7) / 3, 0.5 * (0.3 + 0.45 + 0.35) / 3))
    assert set(end.as_dict()) >= {"type", "id", "stream", "t", "wall_time", "score", "s_v", "s_a", "alpha",
                                  "beta", "start_t", "duration", "peak"}  # fmt: skip


def test_hysteresis_bridges_short_dips() -> None:
    detector = EventDetector("s", EventOptions(threshold=0.5, min_gap=0.3, min_duration=0.0), 1, 0)
    events = feed(detector, [0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.9, 0, 0, 0])
    assert [(e.type, round(e.t, 3)) for e in events] == [("start", 0), ("end", 0.4), ("start", 0.7), ("end", 0.8)]


def test_min_duration_drops_blips_and_delays_the_start() -> None:
    detector = EventDetector("s", EventOptions(threshold=0.5, min_gap=0.2, min_duration=0.3, clear=0.95), 1, 0)
    assert feed(detector, [0.9, 0.9, 0, 0, 0]) == []  # 0.2 s: too short
    detector = EventDetector("s", EventOptions(threshold=0.5, min_gap=0.2, min_duration=0.3, clear=0.95), 1, 0)
    messages = [detector.update(Scores(t=k * HOP, hop=HOP, score=0.9, s_v=0.9, s_a=0)) for k in range(4)]
    assert [len(m) for m in messages] == [0, 0, 1, 0]  # reported once it lasted 0.3 s
    assert isinstance(messages[2][0], Event) and messages[2][0].t == 0


def test_flush_closes_an_open_event_at_the_end_of_the_stream() -> None:
    detector = EventDetector("s", EventOptions(), 0.5, 0.5)
    events = feed(detector, [0, 0.8, 0.8])
    assert [e.type for e in events] == ["start", "end"] and events[1].t == pytest.approx(0.3)


async def test_batcher_gathers_across_lanes_in_order_and_drops_live_oldest() -> None:
    batcher: Batcher[int] = Batcher(max_batch=4, max_wait=0.05)
    a = batcher.add_lane("a", 3, drop_oldest=True)
    b = batcher.add_lane("b", 3, drop_oldest=False)
    for i in range(5):
        await batcher.put(a, i)  # live lane: 0 and 1 are dropped
    await batcher.put(b, 10)
    assert a.dropped == 2
    batch = await batcher.next_batch()
    assert [(lane.name, item) for lane, item in batch] == [("a", 2), ("b", 10), ("a", 3), ("a", 4)]
    batcher.close_lane(a)
    batcher.close_lane(b)
    assert await batcher.next_batch() == [] and batcher.finished


async def test_batcher_backpressure_on_file_lanes() -> None:
    batcher: Batcher[int] = Batcher(max_batch=2, max_wait=0)
    lane = batcher.add_lane("f", 2, drop_oldest=False)
    await batcher.put(lane, 0)
    await batcher.put(lane, 1)
    blocked = asyncio.create_task(batcher.put(lane, 2))
    await asyncio.sleep(0.01)
    assert not blocked.done()  # full: the producer waits, nothing is dropped
    assert [item for _, item in await batcher.next_batch()] == [0, 1]
    await asyncio.wait_for(blocked, 1)
    assert lane.dropped == 0 and [item for _, item in await batcher.next_batch()] == [2]


async def test_batcher_waits_at_most_max_wait_for_the_other_lanes() -> None:
    batcher: Batcher[int] = Batcher(max_batch=8, max_wait=0.05)
    a = batcher.add_lane("a", 16, drop_oldest=True)
    b = batcher.add_lane("b", 16, drop_oldest=True)

    async def later() -> None:
        await asyncio.sleep(0.01)
        await batcher.put(b, 1)

    await batcher.put(a, 0)
    task = asyncio.create_task(later())
    assert [item for _, item in await batcher.next_batch()] == [0, 1]  # b's arrived within max_wait
    await task
    await batcher.put(a, 2)
    await batcher.put(b, 3)
    assert sorted(item for _, item in await batcher.next_batch()) == [2, 3]  # round-robin starts by turns
    await batcher.put(a, 4)
    assert [item for _, item in await batcher.next_batch()] == [4]  # b stays quiet: max_wait, then a alone


def message(kind: str, topic: str = "t", payload: bytes = b"x") -> Message:
    return Message(topic, payload, 1, kind == "state", kind)  # type: ignore[arg-type]


def test_outbox_keeps_events_in_order_and_drops_the_oldest_past_its_bound() -> None:
    outbox = Outbox(3)
    for i in range(5):
        outbox.put(message("event", payload=bytes([i])))
    assert outbox.overflow == 2
    sent = []
    while (m := outbox.peek()) is not None:
        sent.append(m.payload[0])
        outbox.done(m)
    assert sent == [2, 3, 4]


def test_outbox_sends_events_first_keeps_the_latest_state_per_topic_and_drops_scores_while_offline() -> None:
    outbox = Outbox(10)
    outbox.put(message("event", payload=b"e"))
    outbox.put(message("state", "a/status", b"reconnecting"))
    outbox.put(message("state", "a/status", b"online"))
    outbox.put(message("score"))  # not connected: dropped
    assert outbox.scores_dropped == 1 and len(outbox) == 2
    first = outbox.peek()
    assert first is not None and first.payload == b"e"
    outbox.done(first)
    second = outbox.peek()
    assert second is not None and second.payload == b"online"
    # a message not acknowledged (connection lost mid-publish) stays first
    assert outbox.peek() is second
