"""Audio for analysis: mono float32 at one sample rate, time-stamped by the running sample count.

``av.AudioResampler`` converts any decoded layout, format and rate. As in aiortc, the output's time is rebuilt
from the number of samples produced since the last anchor, and re-anchored on the input's timestamp only when
the two disagree by more than ``tolerance`` (a gap or a jump), so resampler delay and rounding never drift.

A live stream's codec hands over 50-100 small frames a second (Opus: 10-20 ms each), and each converted frame
was a chunk carried through the hand-off and the sync on its own: a third of a live stream's capture CPU
(benchmarks/README.md, "Live capacity"). :meth:`AudioConverter.push` gathers decoded frames until they reach the
next timestep boundary (``gather``: the hop) and converts them in one call into one chunk. Only the frame that
reaches a boundary can complete a timestep, so nothing comes out later; the samples are the same.
"""

from __future__ import annotations

import math
from typing import Any

import av
import numpy as np

from .media import AudioChunk, Samples

# sample formats whose planes numpy reads directly (planar ones end in "p"), by their sample type
_SAMPLE_TYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "flt": np.float32,
                 "dbl": np.float64}  # fmt: skip
_EPS = 1e-3  # seconds: as the sync reckons a boundary reached


class AudioConverter:
    def __init__(self, sample_rate: int, *, tolerance: float = 0.04, gather: float | None = None) -> None:
        self.sample_rate = sample_rate
        self.tolerance = tolerance
        self.gather = gather  # seconds: push() gathers frames until they reach a multiple of it
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        self._next_t: float | None = None
        self._held: list[Any] = []  # frames gathered by push(), not converted yet
        self._held_t = 0.0  # the first one's time
        self._held_end = 0.0  # where the last one ends, by the times given
        self._held_raw: Any = None  # what the caller gave with the first one

    def push(self, frame: Any, t: float, wall_time: float, raw: Any = None) -> list[tuple[AudioChunk, Any]]:
        """Like :meth:`convert`, gathering frames until they reach the next multiple of ``gather`` seconds: the
        chunks ready, each with the ``raw`` given with its first frame. A frame that does not follow the ones
        held (a jump of more than ``tolerance``, another format) has them converted first."""
        out: list[tuple[AudioChunk, Any]] = []
        gatherable = self.gather is not None and frame.format.name.rstrip("p") in _SAMPLE_TYPES
        if self._held and (
            not gatherable or abs(t - self._held_end) > self.tolerance or not _same(frame, self._held[0])
        ):
            out += self._release(wall_time)
        if not gatherable:
            chunk = self.convert(frame, t, wall_time)
            return out + ([(chunk, raw)] if chunk is not None else [])
        if not self._held:
            self._held_t, self._held_raw = t, raw
        self._held.append(frame)
        self._held_end = t + frame.samples / frame.sample_rate
        assert self.gather is not None
        if math.floor((self._held_end + _EPS) / self.gather) != math.floor((self._held_t + _EPS) / self.gather):
            out += self._release(wall_time)
        return out

    def _release(self, wall_time: float) -> list[tuple[AudioChunk, Any]]:
        held, self._held = self._held, []
        if not held:
            return []
        frame = held[0] if len(held) == 1 else _joined(held)
        chunk = self.convert(frame, self._held_t, wall_time)
        return [(chunk, self._held_raw)] if chunk is not None else []

    def convert(self, frame: Any, t: float, wall_time: float) -> AudioChunk | None:
        """``av.AudioFrame`` whose first sample is at stream time ``t`` -> a mono float32 chunk (or nothing yet)."""
        return self._chunk(self._resampler.resample(frame), t, wall_time)

    def flush(self, wall_time: float) -> list[tuple[AudioChunk, Any]]:
        """What is held and what the resampler still has: the end of the media."""
        out = self._release(wall_time)
        chunk = self._chunk(self._resampler.resample(None), self._next_t, wall_time)
        return out + ([(chunk, None)] if chunk is not None else [])

    def add_samples(self, samples: Samples, t: float, wall_time: float) -> AudioChunk:
        """Samples already mono float32 at ``sample_rate`` (synthetic, captured): same time keeping."""
        return self._stamp(samples, t, wall_time)

    def _chunk(self, frames: list[Any], t: float | None, wall_time: float) -> AudioChunk | None:
        if not frames:
            return None
        parts = [f.to_ndarray().reshape(-1) for f in frames]
        samples = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if not len(samples) or t is None:
            return None
        return self._stamp(samples.astype(np.float32, copy=False), t, wall_time)

    def _stamp(self, samples: Samples, t: float, wall_time: float) -> AudioChunk:
        if self._next_t is None or abs(t - self._next_t) > self.tolerance:
            self._next_t = t
        chunk = AudioChunk(t=self._next_t, samples=samples, wall_time=wall_time)
        self._next_t += len(samples) / self.sample_rate
        return chunk


def _same(a: Any, b: Any) -> bool:
    return bool(a.format.name == b.format.name and a.layout.name == b.layout.name and a.sample_rate == b.sample_rate)


def _joined(frames: list[Any]) -> Any:
    """Decoded frames of one format, layout and rate as one frame: read in place, joined plane by plane."""
    first = frames[0]
    kind = _SAMPLE_TYPES[first.format.name.rstrip("p")]
    planar = first.format.is_planar
    channels = len(first.layout.channels)
    per_plane = 1 if planar else channels
    planes = [
        np.concatenate([np.frombuffer(f.planes[i], kind, f.samples * per_plane) for f in frames])
        for i in range(channels if planar else 1)
    ]
    joined = av.AudioFrame.from_ndarray(np.stack(planes), format=first.format.name, layout=first.layout.name)
    joined.sample_rate = first.sample_rate
    return joined
