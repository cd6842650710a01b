"""The model task: it takes batches across streams from the batcher (:mod:`pipelines.stages.batcher`), scores
each on the model's thread (:mod:`pipelines.stages.inference`), runs each timestep's scores through its stream's
event detector (:mod:`pipelines.stages.events`), and its zones' (:mod:`pipelines.stages.zones`), and hands on what
comes out (:mod:`pipelines.stages.publishing`). Each timestep's scores carry the box of the picture's unusual
cells (the model's ``video_unusual`` on its grid).

A provisional timestep (a live stream's open timestep, cut when a frame or chunk changed suddenly) is scored
after the batch's timesteps without teaching the model anything, and may only start a clear event
(:meth:`pipelines.stages.events.EventDetector.early`); one that its stream's own timestep, or a later provisional
one, has overtaken by the time its batch is scored is let go.

It also ends an event that a lost source left open, once that source's timesteps from before the loss are all
scored (:meth:`Scoring.end_if_lost`): the detector must not join the two sides of an outage into one event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field

import numpy as np

from pipelines.stages.batcher import Batcher, Lane
from pipelines.stages.events import Scores
from pipelines.stages.inference import ModelRunner
from pipelines.stages.lifecycle import Job, StreamRuntime
from pipelines.stages.publishing import Publishing
from pipelines.stages.stats import PipelineStats
from pipelines.stages.zones import Cells
from streamer.media import Timestep


@dataclass(eq=False)
class Scoring:
    """``streams``: the analyzer's streams (read only); ``after_batch``: called after each batch and once at the
    end, when the batcher has no more (the analyzer moves on the streams whose last timesteps are scored)."""

    batcher: Batcher[Job]
    runner: ModelRunner
    streams: Mapping[str, StreamRuntime]
    stats: PipelineStats
    publishing: Publishing
    _: KW_ONLY
    after_batch: Callable[[], None]
    _scoring: set[str] = field(default_factory=set, init=False)  # streams with timesteps in the batch being scored

    def settled(self, rt: StreamRuntime) -> bool:
        """None of its timesteps waits in its lane or is being scored."""
        return not rt.lane.pending and rt.stream_id not in self._scoring

    def end_if_lost(self, rt: StreamRuntime) -> None:
        """End an open event of a lost source once none of its timesteps is waiting or being scored."""
        if rt.lost and self.settled(rt):
            self._end_lost(rt)

    def _end_lost(self, rt: StreamRuntime) -> None:
        """The source was lost and every timestep from before is scored: an open event ends there."""
        rt.lost = False
        self.publishing.events(rt, rt.flush("source lost"))
        if self.publishing.clips is not None:
            self.publishing.clips.stopped(rt)  # its clip ends where the source was lost

    async def run(self) -> None:
        """Until the batcher has no more: every lane closed (and, serving, released by the analyzer's stop)."""
        while True:
            batch = await self.batcher.next_batch()
            if not batch:
                break
            if any(job.ts.provisional for _, job in batch):
                batch = self._current(batch)
            batched = time.time()
            timesteps = [job.ts for _, job in batch]
            self._scoring = {ts.stream_id for ts in timesteps}
            try:
                result = await self.runner.score_async(timesteps)
            finally:
                self._scoring = set()
            inferred = time.time()
            self.publishing.batch(len(batch))
            scored: dict[str, int] = {}
            for i, (_, job) in enumerate(batch):
                if job.ts.provisional:
                    self._early(job, result, i)
                    continue
                job.stamps.batched, job.stamps.inferred = batched, inferred
                self._handle(job, result, i)
                scored[job.ts.stream_id] = self.streams[job.ts.stream_id].scored_k = job.ts.k
            for stream_id, k in scored.items():
                stream = self.streams[stream_id].stream
                if stream is not None:
                    stream.scored(k)  # an ingest process may let go of those timesteps' full frames
            self.after_batch()
            self.publishing.progress()
        self.after_batch()

    def _current(self, batch: list[tuple[Lane[Job], Job]]) -> list[tuple[Lane[Job], Job]]:
        """The batch without the provisional timesteps it need not score (:func:`wanted`)."""

        def started(stream_id: str) -> bool:
            rt = self.streams[stream_id]
            return rt.detector.active and all(d.active for d in rt.zones.detectors)

        keep = wanted([job.ts for _, job in batch], lambda sid: self.streams[sid].scored_k, started)
        return [item for item, kept in zip(batch, keep, strict=True) if kept]

    def _early(self, job: Job, result: dict[str, np.ndarray], i: int) -> None:
        """A provisional score: it may start a clear event (of the stream or of a zone) now."""
        ts = job.ts
        rt = self.streams[ts.stream_id]
        if np.isnan(result["s"][i]) or not rt.config.enabled:
            return  # a model that cannot score provisionally, or detection switched off
        counters = self.stats.stream(ts.stream_id)
        counters.provisional += 1
        cells = self.runner.cells(ts.stream_id)
        scores = self._scores(ts.t, ts.hop, result, i, cells)
        frame = ts.frames[len(ts.frames) // 2] if ts.frames else None
        started = rt.detector.early(scores, frame)
        if started and frame is not None and rt.stream is not None:
            rt.stream.pin(frame)  # the early event's picture until a timestep of it is scored
        if rt.zones and cells is not None:
            started += rt.zones.update(scores, result["video_unusual"][i], cells, early=True)
        if started:
            counters.early_starts += len(started)
            self.publishing.events(rt, started)

    @staticmethod
    def _scores(t: float, hop: float, result: dict[str, np.ndarray], i: int, cells: Cells | None) -> Scores:
        return Scores(
            t=t, hop=hop, score=float(result["s"][i]), s_v=float(result["s_v"][i]), s_a=float(result["s_a"][i]),
            has_v=bool(result["has_v"][i]), has_a=bool(result["has_a"][i]),
            box=None if cells is None else cells.box(result["video_unusual"][i]),
        )  # fmt: skip

    def _handle(self, job: Job, result: dict[str, np.ndarray], i: int) -> None:
        ts = job.ts
        rt = self.streams[ts.stream_id]
        cells = self.runner.cells(ts.stream_id)  # None: the video model gives no cells (no box, no zones)
        scores = self._scores(ts.t, ts.hop, result, i, cells)
        if ts.reset:  # the first timestep after a reconnect: nothing open can continue across the outage
            self._end_lost(rt)
        counters = self.stats.stream(ts.stream_id)
        counters.timesteps += 1
        counters.media_t = ts.end
        frame = ts.frames[len(ts.frames) // 2] if ts.frames else None
        peak = rt.detector.peak_frame
        if rt.config.enabled:  # detection switched off (pipelines.stages.control): scored, no events
            self.publishing.events(rt, rt.detector.update(scores, frame))
            if rt.zones and cells is not None:
                self.publishing.events(rt, rt.zones.update(scores, result["video_unusual"][i], cells))
        if self.publishing.clips is not None:  # a clip whose end the analysis has passed is told where it ends
            self.publishing.clips.progress(rt, ts.end)
        if self.publishing.tagging is not None:  # its sound, for the tags of its stream's events
            self.publishing.tagging.observe(ts, scores, rt.config.sync.sample_rate)
        new_peak = rt.detector.peak_frame
        if new_peak is not None and new_peak is not peak and rt.stream is not None:
            rt.stream.pin(new_peak)  # an open event's peak: an ingest process keeps its picture
        self.publishing.scored(ts.stream_id, scores, job.stamps)


def wanted(timesteps: Sequence[Timestep], scored_k: Callable[[str], int], started: Callable[[str], bool]) -> list[bool]:
    """Which of a batch's timesteps to score: every timestep, and a provisional one unless it is out of date (its
    timestep is scored already, ``scored_k(stream)`` being the stream's last; or a later timestep of its stream,
    provisional or not, is in the batch: a lane keeps its order) or can start nothing (``started(stream)``: every
    detector of the stream has its event started)."""
    later: set[str] = set()  # streams with a later item in the batch
    keep: list[bool] = []
    for ts in reversed(timesteps):
        sid = ts.stream_id
        keep.append(not ts.provisional or (sid not in later and ts.k > scored_k(sid) and not started(sid)))
        later.add(sid)
    return keep[::-1]
