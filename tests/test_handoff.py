"""The bounded thread-to-asyncio hand-off and its drop policies."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from streamer.handoff import AUDIO_SLACK, DropPolicy, MediaQueue, QueueClosed
from streamer.media import AudioChunk, VideoFrame

LUMA = np.zeros((9, 16), np.uint8)


def frame(t: float) -> VideoFrame:
    return VideoFrame(t=t, luma=LUMA)


def chunk(t: float) -> AudioChunk:
    return AudioChunk(t=t, samples=np.zeros(160, np.float32))


async def test_live_policy_drops_oldest_video_and_counts() -> None:
    q: MediaQueue[object] = MediaQueue(asyncio.get_running_loop(), 3, DropPolicy.DROP_OLDEST_VIDEO)
    items = [frame(0.0), chunk(0.0), frame(0.1), chunk(0.1), frame(0.2), frame(0.3), chunk(0.2)]
    for item in items:
        q.put(item)
    q.put("control", control=True)  # control items are never dropped and may exceed the bound
    got = [await q.get() for _ in range(len(q))]
    assert got[-1] == "control" and [id(x) for x in got[:-1]] == [id(x) for x in items[1:]]
    assert (q.dropped_video, q.dropped_audio) == (1, 0)


async def test_audio_is_dropped_only_past_its_slack() -> None:
    q: MediaQueue[object] = MediaQueue(asyncio.get_running_loop(), 2, DropPolicy.DROP_OLDEST_VIDEO)
    for i in range(2 * AUDIO_SLACK + 3):
        q.put(chunk(i * 0.01))
    assert (q.dropped_video, q.dropped_audio, len(q)) == (0, 3, 2 * AUDIO_SLACK)
    assert [c.t for c in await q.get_batch()] == [i * 0.01 for i in range(3, 2 * AUDIO_SLACK + 3)]  # type: ignore[attr-defined]


async def test_file_policy_blocks_the_producer_and_loses_nothing() -> None:
    q: MediaQueue[int] = MediaQueue(asyncio.get_running_loop(), 3, DropPolicy.BLOCK)
    done = threading.Event()

    def produce() -> None:
        for i in range(200):
            q.put(i)
        done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    await asyncio.sleep(0.05)
    assert not done.is_set() and len(q) == 3  # held back, not dropped
    got = [await q.get() for _ in range(200)]
    thread.join(5)
    assert got == list(range(200))


async def test_close_releases_a_blocked_producer() -> None:
    q: MediaQueue[int] = MediaQueue(asyncio.get_running_loop(), 1, DropPolicy.BLOCK)
    q.put(0)
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            q.put(1)
        except QueueClosed as exc:
            errors.append(exc)

    thread = threading.Thread(target=produce)
    thread.start()
    await asyncio.sleep(0.05)
    q.close()
    thread.join(5)
    assert not thread.is_alive() and len(errors) == 1
    with pytest.raises(QueueClosed):
        q.put(2)


async def test_a_live_consumer_is_woken_only_by_items_that_can_complete_a_timestep() -> None:
    """With boundaries (hop 100 ms, 16 kHz): a frame whose end stays inside the timestep, or a 20 ms audio chunk
    that ends inside it, only queues; the frame or chunk that reaches the next timestep wakes the consumer, who
    then takes everything (nothing a timestep needs is held back)."""
    q: MediaQueue[object] = MediaQueue(asyncio.get_running_loop(), 64, DropPolicy.DROP_OLDEST_VIDEO,
                                       boundaries=(0.1, 16000))  # fmt: skip
    q.put(VideoFrame(t=0.0, luma=LUMA, duration=1 / 30))  # each modality's first item wakes it
    q.put(AudioChunk(t=0.0, samples=np.zeros(320, np.float32)))
    assert len(await asyncio.wait_for(q.get_batch(), 1)) == 2
    waiting = asyncio.get_running_loop().create_task(q.get_batch())
    await asyncio.sleep(0)
    first = [VideoFrame(t=1 / 30, luma=LUMA, duration=1 / 30)]
    first += [AudioChunk(t=0.02 * i, samples=np.zeros(320, np.float32)) for i in range(1, 4)]  # up to 80 ms
    for item in first:
        q.put(item)
    await asyncio.sleep(0.05)
    assert not waiting.done()
    q.put(VideoFrame(t=2 / 30, luma=LUMA, duration=1 / 30))  # ends at 100 ms: video may complete timestep 0
    assert len(await asyncio.wait_for(waiting, 1)) == len(first) + 1
    waiting = asyncio.get_running_loop().create_task(q.get_batch())
    await asyncio.sleep(0)
    q.put(AudioChunk(t=0.08, samples=np.zeros(320, np.float32)))  # ends at 100 ms: so may audio
    assert len(await asyncio.wait_for(waiting, 1)) == 1


async def test_an_onset_wakes_a_live_consumer_at_once_and_so_does_the_item_after_it() -> None:
    """Deciding on the frame (issue 30): a frame the capture marked as an onset is scored while its timestep is
    open, so it must reach the consumer then. It waited for the next item that reached another timestep (up to a
    hop later), and the provisional timestep it asks for was cut with the timestep's own."""
    q: MediaQueue[object] = MediaQueue(asyncio.get_running_loop(), 64, DropPolicy.DROP_OLDEST_VIDEO,
                                       boundaries=(0.1, 16000))  # fmt: skip
    q.put(VideoFrame(t=0.0, luma=LUMA, duration=1 / 30))  # the first item wakes it
    assert len(await asyncio.wait_for(q.get_batch(), 1)) == 1
    waiting = asyncio.get_running_loop().create_task(q.get_batch())
    await asyncio.sleep(0)
    q.put(VideoFrame(t=1 / 30, luma=LUMA, duration=1 / 30, onset=True))  # ends at 67 ms: inside timestep 0
    assert len(await asyncio.wait_for(waiting, 1)) == 1
    waiting = asyncio.get_running_loop().create_task(q.get_batch())
    await asyncio.sleep(0)
    q.put(AudioChunk(t=0.0, samples=np.zeros(320, np.float32)))  # the item after it: the other sense may follow
    assert len(await asyncio.wait_for(waiting, 1)) == 1
    waiting = asyncio.get_running_loop().create_task(q.get_batch())
    await asyncio.sleep(0)
    q.put(AudioChunk(t=0.02, samples=np.zeros(320, np.float32)))  # an ordinary item inside the timestep again
    await asyncio.sleep(0.05)
    assert not waiting.done()
    q.put(VideoFrame(t=2 / 30, luma=LUMA, duration=1 / 30))  # reaches timestep 1
    assert len(await asyncio.wait_for(waiting, 1)) == 2
