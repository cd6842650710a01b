"""Each stream's source task: its timesteps read into its batcher lane, its gaps and its state changes.

A stream's timesteps come from a :class:`streamer.stream.Stream` (one capture thread per source, in this
process) or, with ingest processes, from its :class:`streamer.ingest.RemoteStream`. Its lane is bounded: a live
stream drops its oldest timestep when the model falls behind, a file waits (:func:`open_lane`).

A source task ends in one of three ways (:class:`End`), and its lane closes then (what it queued is still
scored): the media ended or the source failed (it said so itself: ``ended``, ``failed``), :meth:`Sources.stop`
or :meth:`Sources.remove` cut it short (its retained status becomes ``offline``, a file's as well as a live
stream's: a file's would otherwise stay ``online``), or it reached ``--duration`` (status ``ended``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field

from pipelines.config import ClipsConfig, StreamConfig
from pipelines.stages.batcher import Batcher, Lane
from pipelines.stages.lifecycle import Job, StreamRuntime, StreamState
from pipelines.stages.publishing import Publishing
from pipelines.stages.stats import PipelineStats, Stamps
from streamer.errors import SourceError
from streamer.ingest import IngestHub, RemoteStream
from streamer.media import Discontinuity, SourceState, StateChange, StreamInfo
from streamer.stream import Stream, decides_early

log = logging.getLogger("streamer")

LIVE_LANE = 16  # timesteps a live stream may have waiting for the model before its oldest is dropped
FILE_LANE = 32  # a file waits beyond this; each timestep holds its decoded frames (snapshots)


def open_lane(batcher: Batcher[Job], sc: StreamConfig) -> Lane[Job]:
    """A stream's lane: a file read with --realtime waits like a file, but its timesteps come one a hop."""
    live = sc.spec.is_live
    lane = batcher.add_lane(sc.stream_id, LIVE_LANE if live else FILE_LANE, drop_oldest=live,
                            paced=paced(sc, live))  # fmt: skip
    lane.counted = lambda job: not job.ts.provisional  # dropped timesteps: a provisional one is none
    return lane


def paced(sc: StreamConfig, live: bool) -> bool:
    """Whether a stream's timesteps come one a hop (live, or a file read with --realtime, as streamer.av_input
    paces it), so its lane is ready with one: ``live`` as the config says, then as its capture found."""
    return live or (sc.source.realtime and not sc.spec.is_live)


class End(enum.Enum):
    """How a source task ended; its status says so unless the source said it itself."""

    OWN = "own"  # the media ended or the source failed: its source published ``ended`` or ``failed``
    CUT_SHORT = "cut short"  # stop() or remove(): ``offline``
    DURATION = "duration"  # it reached --duration: ``ended``


@dataclass(eq=False)
class Sources:
    """Starts and ends the streams' source tasks. ``hub``: the ingest processes, when streams are read there;
    ``on_lost``: a stream's source was lost (``rt.lost`` is set: an open event must end once the timesteps from
    before are scored); ``on_ended``: a source task ended and its lane is closed."""

    batcher: Batcher[Job]
    stats: PipelineStats
    publishing: Publishing
    hub: IngestHub | None
    _: KW_ONLY
    duration: float | None
    on_lost: Callable[[StreamRuntime], None]
    on_ended: Callable[[], None]
    clips: ClipsConfig = field(default_factory=ClipsConfig)  # event clips: what an in-process stream keeps
    stopping: bool = field(default=False, init=False)  # stop() was called: every source is cut short

    def start(self, tg: asyncio.TaskGroup, rt: StreamRuntime) -> None:
        rt.advance(StreamState.RUNNING)
        rt.task = tg.create_task(self._read(rt), name=f"source-{rt.stream_id}")
        rt.task.add_done_callback(lambda _: self._gone(rt))
        if self._cut_short(rt):  # stopped or removed while it was being added
            rt.task.cancel()

    def stop(self, streams: Iterable[StreamRuntime]) -> None:
        """Cut every source short (what they queued is still scored)."""
        self.stopping = True
        for rt in streams:
            if rt.task is not None:
                rt.task.cancel()

    def remove(self, rt: StreamRuntime) -> None:
        """Cut one source short for good: once flushed, its stream is released."""
        rt.removed = True
        if rt.task is not None:
            rt.task.cancel()

    def _cut_short(self, rt: StreamRuntime) -> bool:
        return self.stopping or rt.removed

    def _gone(self, rt: StreamRuntime) -> None:
        """A source task cancelled before it ran never reached its ``finally``: it ends here."""
        if rt.state is StreamState.RUNNING:
            self._ended(rt, End.CUT_SHORT if self._cut_short(rt) else End.OWN)

    def _ended(self, rt: StreamRuntime, end: End) -> None:
        rt.advance(StreamState.ENDED)
        self.batcher.close_lane(rt.lane)
        if end is not End.OWN:
            self.publishing.status(rt.stream_id, SourceState.OFFLINE if end is End.CUT_SHORT else SourceState.ENDED)
        self.on_ended()  # nothing of it may be waiting: then no batch would come to flush it

    def _open(self, rt: StreamRuntime) -> Stream | RemoteStream:
        """Its capture, which tells its state changes, what it found (live or not) and its gaps."""
        sc = rt.config

        def on_info(info: StreamInfo) -> None:
            rt.info, rt.opened = info, True  # (its ``online`` may go unheard: a late listener gets the latest state)
            rt.lane.drop_oldest = info.live  # recorded media over HTTP waits like a file instead of dropping
            rt.lane.paced = paced(sc, info.live)

        def on_gap(gap: Discontinuity) -> None:
            rt.lost = True
            self.on_lost(rt)

        def on_state(change: StateChange) -> None:
            rt.heard(change)  # whether it opened, and its last error (RunSummary.never_opened)
            self.publishing.state_changed(change)

        if self.hub is not None:
            remote = self.hub.remotes[sc.stream_id]
            remote.on_state, remote.on_info, remote.on_gap = on_state, on_info, on_gap
            return remote
        return Stream(sc.spec, sc.source, sc.sync, on_state=on_state, on_info=on_info, on_gap=on_gap,
                      early=decides_early(sc.spec, sc.source, sc.sync),
                      clip_keep=self.clips.keep(sc.spec.is_live, sc.sync.hop))  # fmt: skip

    async def _read(self, rt: StreamRuntime) -> None:
        counters = self.stats.stream(rt.stream_id)
        stream = rt.stream = self._open(rt)
        end = End.OWN
        try:
            async with contextlib.aclosing(stream.__aiter__()) as timesteps:  # type: ignore[type-var]
                async for ts in timesteps:
                    if self.duration is not None and ts.t >= self.duration - 1e-9:
                        end = End.DURATION
                        break
                    now = time.time()
                    frames = [] if ts.video_repeated or ts.provisional else ts.frames
                    counters.frames += len(frames)
                    decoded = max((f.wall_time for f in frames), default=ts.wall_time)
                    await self.batcher.put(rt.lane, Job(ts, Stamps(decoded=min(decoded, now), received=now)))
        except SourceError as exc:
            rt.error = exc
            log.error("error: %s", exc)
        except asyncio.CancelledError:
            if not self._cut_short(rt):
                raise
            end = End.CUT_SHORT
        finally:
            self._ended(rt, end)
