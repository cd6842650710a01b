"""Audio for analysis: mono float32 at one sample rate, time-stamped by the running sample count.

``av.AudioResampler`` converts any decoded layout, format and rate. As in aiortc, the output's time is rebuilt
from the number of samples produced since the last anchor, and re-anchored on the input's timestamp only when
the two disagree by more than ``tolerance`` (a gap or a jump), so resampler delay and rounding never drift.
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np

from .media import AudioChunk, Samples


class AudioConverter:
    def __init__(self, sample_rate: int, *, tolerance: float = 0.04) -> None:
        self.sample_rate = sample_rate
        self.tolerance = tolerance
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        self._next_t: float | None = None

    def convert(self, frame: Any, t: float, wall_time: float) -> AudioChunk | None:
        """``av.AudioFrame`` whose first sample is at stream time ``t`` -> a mono float32 chunk (or nothing yet)."""
        return self._chunk(self._resampler.resample(frame), t, wall_time)

    def flush(self, wall_time: float) -> AudioChunk | None:
        return self._chunk(self._resampler.resample(None), self._next_t, wall_time)

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
