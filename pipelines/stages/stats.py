"""Counters and per-stage latencies, published on ``{prefix}/stats`` every ``stats_interval`` seconds.

Every timestep carries the wall time it reached each stage (:class:`Stamps`): ``decoded`` (its last video frame
came out of the decoder), ``received`` (the sync cut it and the pipeline took it), ``batched``, ``inferred``
and ``published`` (its scores and events were handed to the publisher). Latencies are the differences between
consecutive stages over the last window, reported as p50 and p99 in milliseconds.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STAGES = ("decoded", "received", "batched", "inferred", "published")
STAGE_NAMES = ("sync", "batch", "model", "publish", "total")  # the latencies between them, and all of it
WINDOW = 4096  # latency samples kept per stage


@dataclass(slots=True)
class Stamps:
    decoded: float
    received: float
    batched: float = 0.0
    inferred: float = 0.0
    published: float = 0.0

    def latencies(self) -> tuple[float, float, float, float, float]:
        """Seconds spent in each of STAGE_NAMES."""
        return (self.received - self.decoded, self.batched - self.received, self.inferred - self.batched,
                self.published - self.inferred, self.published - self.decoded)  # fmt: skip


@dataclass
class StreamCounters:
    frames: int = 0  # decoded video frames that reached the pipeline
    timesteps: int = 0  # timesteps scored
    events: int = 0
    provisional: int = 0  # provisional timesteps scored (a live stream's sudden changes, before their timestep closed)
    early_starts: int = 0  # events started by a provisional score
    state: str = "connecting"
    media_t: float = 0.0  # media time reached
    last: tuple[float, int, int] = (0.0, 0, 0)  # (wall time, frames, timesteps) at the last report

    def counts(self, dropped_frames: int, dropped_timesteps: int) -> StreamCounts:
        return StreamCounts(self.frames, self.timesteps, self.events, self.state, self.media_t, dropped_frames,
                            dropped_timesteps)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StreamCounts:
    """A stream's counters at one moment, as the outputs read them (a copy: an output cannot change the
    analyzer's own :class:`StreamCounters`, nor see them change under it)."""

    frames: int  # decoded video frames that reached the pipeline
    timesteps: int  # timesteps scored
    events: int  # events ended
    state: str  # its source's state (streamer.media.SourceState's value)
    media_t: float  # media time reached
    dropped_frames: int  # video frames dropped by its capture queue
    dropped_timesteps: int  # timesteps dropped waiting for the model (its batcher lane)


@dataclass
class PipelineStats:
    device: str
    started: float = field(default_factory=time.time)
    streams: dict[str, StreamCounters] = field(default_factory=dict)
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=WINDOW))
    stage_ms: dict[str, deque[float]] = field(
        default_factory=lambda: {name: deque(maxlen=WINDOW) for name in STAGE_NAMES}
    )

    def stream(self, stream_id: str) -> StreamCounters:
        counters = self.streams.get(stream_id)
        if counters is None:  # called per timestep: build the counters only once
            counters = self.streams[stream_id] = StreamCounters(last=(time.time(), 0, 0))
        return counters

    def record(self, stamps: Stamps) -> None:
        for samples, seconds in zip(self.stage_ms.values(), stamps.latencies(), strict=True):
            samples.append(1000 * seconds)

    def report(
        self,
        drops: dict[str, dict[str, int]],
        outbox: dict[str, int] | None = None,
        delivery_ms: deque[float] | None = None,
    ) -> dict[str, Any]:
        """The stats message; resets the per-interval rates. ``drops``: per stream, ``dropped_frames`` (capture
        queue) and ``dropped_timesteps`` (batcher lane), counted where they happen."""
        now = time.time()
        streams: dict[str, Any] = {}
        for stream_id, c in self.streams.items():
            then, frames, timesteps = c.last
            span = max(now - then, 1e-9)
            streams[stream_id] = {
                "state": c.state,
                "media_t": round(c.media_t, 3),
                "input_fps": round((c.frames - frames) / span, 2),
                "output_fps": round((c.timesteps - timesteps) / span, 2),  # timesteps scored per second
                "frames": c.frames,
                "timesteps": c.timesteps,
                "dropped_frames": drops.get(stream_id, {}).get("dropped_frames", 0),
                "dropped_timesteps": drops.get(stream_id, {}).get("dropped_timesteps", 0),
                "events": c.events,
                "provisional": c.provisional,
                "early_starts": c.early_starts,
            }
            c.last = (now, c.frames, c.timesteps)
        sizes = np.asarray(self.batch_sizes, dtype=np.float64)
        out: dict[str, Any] = {
            "wall_time": round(now, 3),
            "uptime": round(now - self.started, 1),
            "device": self.device,
            "streams": streams,
            "batch": {
                "count": len(sizes),
                "mean": round(float(sizes.mean()), 2) if len(sizes) else None,
                "p50": float(np.percentile(sizes, 50)) if len(sizes) else None,
                "max": int(sizes.max()) if len(sizes) else None,
            },
            "latency_ms": {name: percentiles(values) for name, values in self.stage_ms.items()},
        }
        if delivery_ms is not None:
            out["event_delivery_ms"] = percentiles(delivery_ms)  # queued -> acknowledged by the broker
        if outbox is not None:
            out["outbox"] = outbox
        return out


class Rates:
    """Per stream (decoded frames in, timesteps scored) per second over the last ``window`` seconds, from the
    counters given at each call (an output passes its view's ``stream_counts()``; call it about once a second to
    keep the window filled)."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, dict[str, tuple[int, int]]]] = deque()

    def sample(self, streams: Mapping[str, StreamCounts]) -> dict[str, tuple[float, float]]:
        now = time.monotonic()
        counts = {sid: (c.frames, c.timesteps) for sid, c in streams.items()}
        self._samples.append((now, counts))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        then, old = self._samples[0]
        span = now - then
        out: dict[str, tuple[float, float]] = {}
        for sid, (frames, timesteps) in counts.items():
            f0, t0 = old.get(sid, (frames, timesteps))
            out[sid] = ((frames - f0) / span, (timesteps - t0) / span) if span > 0 else (0.0, 0.0)
        return out


def percentiles(values: deque[float] | list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None}
    p50, p99 = np.percentile(np.asarray(values, dtype=np.float64), [50, 99])
    return {"p50": round(float(p50), 2), "p99": round(float(p99), 2)}
