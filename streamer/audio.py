"""Audio for analysis: mono float32 at one sample rate, time-stamped by the running sample count.

FFmpeg's ``aformat`` filter (PyAV's filter graph, as ``av.AudioResampler`` builds it) converts any decoded
layout, format and rate. As in aiortc, the output's time is rebuilt from the number of samples produced since
the last anchor, and re-anchored on the input's timestamp only when the two disagree by more than ``tolerance``
(a gap or a jump), so resampler delay and rounding never drift.

With ``hop`` (the timesteps' length), decoded frames go into the filter as they come (a push: about 2 us) and
its output is taken and sent on as one chunk only once it reaches the next timestep boundary, all of it: the
chunk, its hand-off and the sync's work then happen once a timestep instead of once a packet, and nothing comes
out later for it (a timestep is not complete before its audio reaches its end). A new filter's first frame comes
out at once; what the filter keeps back from then on (its delay, about 1 ms from 48 to 16 kHz) is allowed for.
``av.AudioResampler.resample`` per packet cost about 50 us, most of it the end-of-output error PyAV raises and
catches inside every call (PyAV 18); the whole audio path was 45% of a live stream's capture code.
"""

from __future__ import annotations

import math
from errno import EAGAIN
from typing import Any

import av
import av.filter
import numpy as np

from .media import AudioChunk, Samples
from .sync import BOUNDARY_EPS


class AudioConverter:
    def __init__(self, sample_rate: int, *, tolerance: float = 0.04, hop: float | None = None) -> None:
        self.sample_rate = sample_rate
        self.tolerance = tolerance
        self.hop = hop  # None: every frame's output comes out at once
        self._graph: Any = None
        self._key: tuple[str, str, int] | None = None  # the input the graph is built for: format, layout, rate
        self._next_t: float | None = None  # stream time of the next output sample
        self._pending: float | None = None  # stream time of the first frame pushed since the last chunk
        self._pending_end = 0.0  # where the input pushed so far ends, stream time
        self._pushed = 0.0  # seconds of input pushed since the last chunk (the filter also keeps back its delay)

    def push(self, frame: Any, t: float, wall_time: float) -> list[AudioChunk]:
        """``av.AudioFrame`` whose first sample is at stream time ``t`` -> mono float32 chunks (none yet, one, or
        two where the input changes). With ``hop``, the output waits in the filter until it reaches another
        timestep than the last chunk did, and then covers every frame pushed since; a frame that does not follow
        the ones waiting (a gap, a jump), or comes in another format, first sends those out."""
        out = []
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        first = key != self._key
        if first:
            out.append(self.flush(wall_time))  # the old input's last samples: a new format needs a new filter
            self._graph, self._key = _graph(frame, self.sample_rate), key
        elif self._pending is not None and abs(t - self._pending_end) > self.tolerance:
            out.append(self._take(wall_time))
        self._graph.push(frame)
        duration = frame.samples / frame.sample_rate
        if self._pending is None:
            self._pending = t
        self._pending_end = t + duration
        self._pushed += duration
        # a new filter's first frame comes out at once: what it keeps back is its delay, which _due allows for
        if self.hop is None or first or self._due():
            out.append(self._take(wall_time))
        return [chunk for chunk in out if chunk is not None]

    def flush(self, wall_time: float) -> AudioChunk | None:
        """The rest: what waits in the filter, its delay included."""
        if self._graph is None:
            return None
        t = self._pending if self._pending is not None else self._next_t
        self._graph.push(None)
        samples = self._pull()
        self._graph = self._key = self._pending = None
        self._pushed = 0.0
        return None if samples is None or t is None else self._stamp(samples, t, wall_time)

    def add_samples(self, samples: Samples, t: float, wall_time: float) -> AudioChunk:
        """Samples already mono float32 at ``sample_rate`` (synthetic, captured): same time keeping."""
        return self._stamp(samples, t, wall_time)

    def _due(self) -> bool:
        """The output would reach another timestep than the last chunk did: fully, its last millisecond too (the
        sync takes audio that ends within a millisecond of a boundary as reaching it, and would fill the rest
        with silence)."""
        assert self.hop is not None and self._pending is not None
        start = self._next_t  # where the last chunk ended, unless the next one starts anew (see _stamp)
        if start is None or abs(self._pending - start) > self.tolerance:
            start = self._pending
        # the last chunk ended its delay short of its input; this one will end the same delay short of its own
        reach = start + self._pushed
        return math.floor(reach / self.hop + 1e-9) > math.floor((start + BOUNDARY_EPS) / self.hop)

    def _take(self, wall_time: float) -> AudioChunk | None:
        if self._pending is None:
            return None
        t = self._pending
        samples = self._pull()
        if samples is None:
            return None  # all in the filter's delay so far: the next chunk starts at this frame still
        self._pending = None
        self._pushed = 0.0
        return self._stamp(samples, t, wall_time)

    def _pull(self) -> Samples | None:
        parts = []
        while True:
            try:
                parts.append(self._graph.pull().to_ndarray().reshape(-1))
            except EOFError:
                break
            except av.FFmpegError as exc:
                if exc.errno != EAGAIN:
                    raise
                break
        if not parts:
            return None
        samples = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return samples.astype(np.float32, copy=False) if len(samples) else None

    def _stamp(self, samples: Samples, t: float, wall_time: float) -> AudioChunk:
        if self._next_t is None or abs(t - self._next_t) > self.tolerance:
            self._next_t = t
        chunk = AudioChunk(t=self._next_t, samples=samples, wall_time=wall_time)
        self._next_t += len(samples) / self.sample_rate
        return chunk


def _graph(frame: Any, sample_rate: int) -> Any:
    """abuffer -> aformat (mono float32 at ``sample_rate``) -> abuffersink, as ``av.AudioResampler`` builds it."""
    graph = av.filter.Graph()
    extra = {"time_base": str(frame.time_base)} if frame.time_base is not None else {}
    source = graph.add("abuffer", sample_rate=str(frame.sample_rate), sample_fmt=frame.format.name,
                       channel_layout=frame.layout.name, **extra)  # fmt: skip
    convert = graph.add("aformat", sample_rates=str(sample_rate), sample_fmts="flt", channel_layouts="mono")
    sink = graph.add("abuffersink")
    source.link_to(convert)
    convert.link_to(sink)
    graph.configure()
    return graph
