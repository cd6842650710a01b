"""streamer.audio.AudioConverter: decoded audio to mono float32 chunks, one a timestep."""

from __future__ import annotations

import asyncio
import itertools
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streamer.audio import AudioConverter
from streamer.spec import parse_source
from streamer.stream import Stream

from .media import make_clip


def _frames(n: int, samples: int, rate: int, layout: str = "stereo", seed: int = 0) -> list[av.AudioFrame]:
    rng = np.random.default_rng(seed)
    channels = 2 if layout == "stereo" else 1
    out = []
    for i in range(n):
        data = rng.normal(0, 0.1, (channels, samples)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, i * samples, Fraction(1, rate)
        out.append(frame)
    return out


def test_with_a_hop_the_output_comes_once_a_timestep_reaching_its_end_with_every_sample_of_one_at_a_time() -> None:
    frames = _frames(100, 960, 48000)  # 2 s of 20 ms Opus-sized packets
    one_by_one = AudioConverter(16000)
    by_hop = AudioConverter(16000, hop=0.1)
    singles, chunks = [], []
    for i, frame in enumerate(frames):
        t = i * 0.02
        singles += one_by_one.push(frame, t, 0.0)
        for chunk in by_hop.push(frame, t, 0.0):
            chunks.append(chunk)
            # out only once it reaches a new timestep, and then all the way (not a millisecond short)
            end = chunk.end(16000)
            assert end >= 0.1 * round(end / 0.1) - 1e-9
    tails = [c for c in (one_by_one.flush(0.0), by_hop.flush(0.0)) if c is not None]
    assert len(singles) >= 99 and 19 <= len(chunks) <= 21
    a = np.concatenate([c.samples for c in singles] + [tails[0].samples])
    b = np.concatenate([c.samples for c in chunks] + [tails[1].samples])
    np.testing.assert_array_equal(a, b)
    # contiguous: each chunk starts where the last one ended
    for before, after in itertools.pairwise(chunks):
        assert abs(after.t - before.end(16000)) < 1e-9


def test_a_gap_sends_the_waiting_audio_out_first_and_the_next_chunk_starts_after_it() -> None:
    conv = AudioConverter(16000, hop=0.1)
    frames = _frames(6, 960, 48000)
    out = []
    for i, frame in enumerate(frames):
        t = i * 0.02 + (0.94 if i >= 3 else 0.0)  # the fourth packet at 1.0 s: a gap of 0.94 s
        out += conv.push(frame, t, 0.0)
    # before the gap: all of it out (the first packet at once, the next two when the gap came), nothing after
    assert out[0].t == 0.0 and all(c.t < 0.07 for c in out)
    assert abs(out[-1].end(16000) - 0.06) < 0.002  # all but the filter's delay (about a millisecond)
    tail = conv.flush(0.0)
    assert tail is not None and tail.t == 1.0  # the audio after the gap starts where its packets say
    assert abs(tail.end(16000) - 1.06) < 0.002


def test_audio_that_changes_format_mid_stream_goes_on_in_the_new_format() -> None:
    """``av.AudioResampler`` raised ValueError("Frame does not match AudioResampler setup") on a frame of another
    rate or layout, failing the connection; a new filter takes it now."""
    conv = AudioConverter(16000, hop=0.1)
    first = _frames(10, 960, 48000, "stereo")
    then = _frames(10, 441, 44100, "mono", seed=1)
    chunks = []
    for i, frame in enumerate(first + then):
        chunks += conv.push(frame, i * 0.02 if i < 10 else 0.2 + (i - 10) * 0.01, 0.0)
    tail = conv.flush(0.0)
    total = sum(len(c.samples) for c in chunks) + (len(tail.samples) if tail else 0)
    assert abs(total - 16000 * 0.3) < 40  # 0.2 s at 48 kHz and 0.1 s at 44.1 kHz, both at 16 kHz


def test_no_timestep_of_a_continuous_file_ends_in_silence_the_audio_had(tmp_path: Path) -> None:
    """AAC frames (1024 samples at 48 kHz) end a millisecond short of a timestep boundary every 1.6 s; the sync
    takes audio within a millisecond as reaching it, and used to be handed the frame's output alone, whose last
    millisecond was still in the resampler: 16 samples of the window were zeros, a step the audio never had."""
    clip = make_clip(tmp_path / "noise.mp4", duration=5.0, noise_dbfs=-20.0)

    async def windows() -> list[np.ndarray]:
        return [ts.audio_window async for ts in Stream(parse_source(str(clip)))]

    got = asyncio.run(windows())
    assert len(got) >= 45
    silent_tails = [k for k, w in enumerate(got[:-1]) if not np.any(w[-16:])]
    assert silent_tails == []
