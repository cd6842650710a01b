"""The built-in synthetic source: scheduled bursts land where scheduled, deterministically."""

from __future__ import annotations

import asyncio

import pytest

from streamer.errors import SourceSpecError
from streamer.media import Timestep, VideoFrame
from streamer.options import SourceOptions
from streamer.source import Source
from streamer.spec import parse_source
from streamer.stream import Stream

from .helpers import brightest, collect, loudest


async def test_bursts_land_in_their_timesteps() -> None:
    steps = await collect(Stream(parse_source("synthetic:?events=av@1,a@2,v@3&duration=4&realtime=0")))
    assert [ts.k for ts in steps] == list(range(40))
    assert not any(ts.video_missing or ts.audio_missing or ts.video_repeated for ts in steps)
    tone = {ts.k for ts in steps if ts.audio.std() > 0.1}
    motion = {ts.k for ts in steps if max(f.luma.max() for f in ts.frames) >= 200}
    assert tone == set(range(10, 20)) | set(range(20, 30))
    assert motion == set(range(10, 20)) | set(range(30, 40))
    assert loudest(steps) in range(10, 30) and brightest(steps) in range(10, 20)


async def test_same_parameters_same_media() -> None:
    uri = "synthetic:?events=av@0.5&duration=1&realtime=0&seed=7"
    a, b = await collect(Stream(parse_source(uri))), await collect(Stream(parse_source(uri)))
    assert all((x.audio_window == y.audio_window).all() for x, y in zip(a, b, strict=True))
    assert all(
        (f.luma == g.luma).all() for x, y in zip(a, b, strict=True) for f, g in zip(x.frames, y.frames, strict=True)
    )
    c = await collect(Stream(parse_source(uri.replace("seed=7", "seed=8"))))
    assert any((x.audio_window != y.audio_window).any() for x, y in zip(a, c, strict=True))


async def test_loop_continues_the_timeline() -> None:
    spec = parse_source("synthetic:?events=a@0.2&length=0.2&duration=0.5&realtime=0")
    stream = Stream(spec, SourceOptions(loop=True))
    steps: list[Timestep] = []
    async for ts in stream:
        steps.append(ts)
        if len(steps) == 15:
            break
    assert [ts.k for ts in steps] == list(range(15))
    assert {ts.k for ts in steps if ts.audio.std() > 0.1} == {2, 3, 7, 8, 12, 13}


async def test_live_source_drops_oldest_frames_when_the_consumer_lags() -> None:
    spec = parse_source("synthetic:?events=&duration=1.5&fps=60")  # realtime: live
    source = Source(spec, SourceOptions(queue_size=4))
    frames = 0
    async for item in source:
        if isinstance(item, VideoFrame):
            frames += 1
            await asyncio.sleep(0.05)  # a slow consumer: 20 frames/s for a 60 frames/s source
    assert source.stats.dropped_video > 0 and frames + source.stats.dropped_video == 90
    assert source.stats.dropped_audio == 0


def test_bad_parameters_are_refused_by_name() -> None:
    for uri, message in [
        ("synthetic:?events=x@4", "bad event 'x@4'"),
        ("synthetic:?fps=0", "fps='0' must be"),
        ("synthetic:?color=red", "unknown parameter"),
    ]:
        with pytest.raises(SourceSpecError, match=message):
            Stream(parse_source(uri))
