"""Audio conversion: decoded frames gathered up to a timestep boundary give the same samples, in fewer chunks."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest

from streamer.audio import AudioConverter
from streamer.sync import SyncOptions, TimestepAssembler


def _frames(layout: str, fmt: str, rate: int, sizes: list[int], start: float = 0.0) -> list[tuple[Any, float]]:
    """Decoded-like frames of a 440 Hz tone, each with its stream time."""
    out = []
    t, n = start, 0
    channels = 2 if layout == "stereo" else 1
    for size in sizes:
        tone = np.sin(2 * np.pi * 440 * (n + np.arange(size)) / rate).astype(np.float32) * 0.5
        if fmt == "s16":
            samples = (tone * 32767).astype(np.int16)
            array = np.repeat(samples, channels).reshape(1, -1)  # packed: interleaved
        else:  # fltp
            array = np.stack([tone] * channels)
        frame = av.AudioFrame.from_ndarray(array, format=fmt, layout=layout)
        frame.sample_rate = rate
        frame.pts, frame.time_base = n, Fraction(1, rate)
        out.append((frame, t))
        t += size / rate
        n += size
    return out


@pytest.mark.parametrize(
    ("layout", "fmt", "rate", "size"), [("stereo", "fltp", 48000, 960), ("mono", "s16", 44100, 1024)]
)
def test_gathered_frames_give_the_same_samples_in_a_chunk_a_timestep(
    layout: str, fmt: str, rate: int, size: int
) -> None:
    frames = _frames(layout, fmt, rate, [size] * 60)
    one_by_one = AudioConverter(16000)
    expected = [c for f, t in frames if (c := one_by_one.convert(f, t, 0.0)) is not None]
    gathering = AudioConverter(16000, gather=0.1)
    chunks = [c for f, t in frames for c, _ in gathering.push(f, t, 0.0, t)]
    tail = gathering.flush(0.0)
    expected_tail = one_by_one.flush(0.0)
    got = np.concatenate([c.samples for c in chunks] + [c.samples for c, _ in tail])
    want = np.concatenate([c.samples for c in expected] + [c.samples for c, _ in expected_tail])
    assert np.array_equal(got, want)
    assert chunks[0].t == expected[0].t
    # a chunk each time the frames reach a boundary (the one that reaches it is the one that could complete a
    # timestep), each ending within a frame past it; where the frames are aligned with the timesteps, the
    # resampler's delay leaves each 1 ms short, and the next frame goes alone
    duration = len(frames) * size / rate
    assert duration / 0.1 - 1 <= len(chunks) <= 2 * duration / 0.1 + 1 < len(frames)
    for chunk in chunks:
        end = chunk.t + len(chunk.samples) / 16000
        past = end - round(end / 0.1) * 0.1
        assert -0.002 <= past < size / rate, (chunk.t, end)


def test_a_jump_sends_what_is_held_first() -> None:
    converter = AudioConverter(16000, gather=0.1)
    first = _frames("stereo", "fltp", 48000, [960, 960])
    out = [c for f, t in first for c, _ in converter.push(f, t, 0.0, "a")]
    assert out == []  # 40 ms: no boundary yet
    jumped = _frames("stereo", "fltp", 48000, [960] * 5, start=5.0)
    out = [(round(c.t, 4), raw) for f, t in jumped[:1] for c, raw in converter.push(f, t, 0.0, "b")]
    assert out == [(0.0, "a")]  # the 40 ms held, stamped where they began; the jumped frame is held
    out = [(round(c.t, 4), raw) for f, t in jumped[1:] for c, raw in converter.push(f, t, 0.0, "c")]
    assert out == [(5.0, "b")]  # it reaches 5.1 with the fifth frame


@pytest.mark.parametrize(("size", "start"), [(480, 0.0), (960, 0.0), (480, 0.0031), (1024, 0.0), (960, 0.0994)])
def test_timesteps_come_out_at_the_same_frame_as_with_a_chunk_a_frame(size: int, start: float) -> None:
    """The sync (audio only) fed chunk by chunk and fed gathered chunks emits each timestep at the same decoded
    frame: gathering never delays one. Frames aligned with the timesteps are the edge: the resampler's delay
    leaves each boundary's audio exactly 1 ms short of it, which the sync counts as reached."""
    rate = 44100 if size == 1024 else 48000
    frames = _frames("stereo", "fltp", rate, [size] * 120, start=start)
    emitted: dict[bool, list[int]] = {}
    for gather in (False, True):
        converter = AudioConverter(16000, gather=0.1 if gather else None)
        sync = TimestepAssembler("a", SyncOptions(), has_video=False, has_audio=True)
        counts, total = [], 0
        for frame, t in frames:
            for chunk, _ in converter.push(frame, t, 0.0):
                total += len(sync.push_audio(chunk))
            counts.append(total)
        emitted[gather] = counts
    assert emitted[True] == emitted[False]
    assert emitted[True][-1] >= 10
