"""Audio for analysis: mono float32 at one sample rate, time-stamped by the running sample count.

``av.AudioResampler`` converts any decoded layout, format and rate. As in aiortc, the output's time is rebuilt
from the number of samples produced since the last anchor, and re-anchored on the input's timestamp only when
the two disagree by more than ``tolerance`` (a gap or a jump), so resampler delay and rounding never drift.

A live stream's codec hands over 50-100 small frames a second (Opus: 10-20 ms each), and each converted frame
was a chunk carried through the hand-off and the sync on its own: a third of a live stream's capture CPU
(benchmarks/README.md, "Live capacity"). :meth:`AudioConverter.push` gathers decoded frames until they reach the
next timestep boundary (``gather``: the hop), converted one by one, and sends them as one chunk. Only samples that
reach a boundary can complete a timestep, so nothing comes out later; the samples are the same.
"""

from __future__ import annotations

import math
from typing import Any

import av
import numpy as np

from .media import AudioChunk, Samples

# seconds short of a boundary at which audio has reached it, as the sync reckons (its 1 ms, and float rounding):
# a resampler's delay leaves audio that is aligned with the timesteps exactly 1 ms short of each boundary, which
# the sync's float arithmetic reads as reached at some boundaries and not at others
_REACHED = 1e-3 + 1e-6


class AudioConverter:
    def __init__(self, sample_rate: int, *, tolerance: float = 0.04, gather: float | None = None) -> None:
        self.sample_rate = sample_rate
        self.tolerance = tolerance
        self.gather = gather  # seconds: push() gathers frames until they reach a multiple of it
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        self._next_t: float | None = None
        self._held: list[Samples] = []  # samples gathered by push(), not sent yet
        self._held_t = 0.0  # their time
        self._held_end = 0.0  # where they end
        self._boundary = 0.0  # where they are sent
        self._held_raw: Any = None  # what the caller gave with the first of them

    def push(self, frame: Any, t: float, wall_time: float, raw: Any = None) -> list[tuple[AudioChunk, Any]]:
        """Like :meth:`convert`, but the converted samples are gathered until they reach the next multiple of
        ``gather`` seconds as the sync reckons it (within a millisecond, by the time stamped here): the chunks
        ready, each with the ``raw`` given with its first frame. Samples that do not follow those held
        (re-anchored: a gap, a jump) send those first."""
        chunk = self.convert(frame, t, wall_time)
        if self.gather is None:
            return [(chunk, raw)] if chunk is not None else []
        if chunk is None:
            return []
        out: list[tuple[AudioChunk, Any]] = []
        if self._held and abs(chunk.t - self._held_end) > 1e-9:
            out.append(self._release(wall_time))
        if not self._held:
            self._held_t, self._held_raw = chunk.t, raw
            # the next boundary after their start; when they start just short of one, that one: the samples sent
            # before may have been read as short of it (by float rounding), and these are the ones that reach it
            self._boundary = (math.floor(chunk.t / self.gather + 1e-6) + 1) * self.gather
        self._held.append(chunk.samples)
        self._held_end = chunk.t + len(chunk.samples) / self.sample_rate
        if self._held_end >= self._boundary - _REACHED:
            out.append(self._release(wall_time))
        return out

    def _release(self, wall_time: float) -> tuple[AudioChunk, Any]:
        held, self._held = self._held, []
        samples = held[0] if len(held) == 1 else np.concatenate(held)
        return AudioChunk(t=self._held_t, samples=samples, wall_time=wall_time), self._held_raw

    def convert(self, frame: Any, t: float, wall_time: float) -> AudioChunk | None:
        """``av.AudioFrame`` whose first sample is at stream time ``t`` -> a mono float32 chunk (or nothing yet)."""
        return self._chunk(self._resampler.resample(frame), t, wall_time)

    def flush(self, wall_time: float) -> list[tuple[AudioChunk, Any]]:
        """What is held and what the resampler still has: the end of the media."""
        out = [self._release(wall_time)] if self._held else []
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
