"""A stream's timesteps: a :class:`~streamer.source.Source` cut into timesteps by the sync assembler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from .clips import ClipInfo, PacketRing
from .media import AudioChunk, Box, Discontinuity, StateChange, StreamInfo, Timestep, VideoFrame
from .onsets import OnsetGate
from .options import SourceOptions
from .snapshot import encode_jpeg
from .source import Source
from .spec import SourceSpec
from .sync import SyncOptions, TimestepAssembler


def decides_early(spec: SourceSpec, options: SourceOptions, sync: SyncOptions) -> bool:
    """Whether the analyzer scores a stream's sudden changes before their timestep closes: ``early_start`` on a
    stream whose timesteps come in real time (live, or a file read with ``--realtime``)."""
    return sync.early and (spec.is_live or options.realtime)


class Stream:
    """``async for ts in Stream(spec)``: timesteps in order, across reconnects, until the source ends.

    ``early``: between them, a provisional timestep (the open one so far) after each frame or chunk that may show
    an onset (:mod:`streamer.onsets`); see :func:`decides_early`."""

    def __init__(
        self,
        spec: SourceSpec,
        options: SourceOptions | None = None,
        sync: SyncOptions | None = None,
        *,
        on_state: Callable[[StateChange], None] | None = None,
        on_info: Callable[[StreamInfo], None] | None = None,
        on_gap: Callable[[Discontinuity], None] | None = None,
        early: bool = False,
        clip_keep: float | None = None,
    ) -> None:
        self.sync = sync or SyncOptions()
        self.early = early
        # The source delivers audio at the sync's rate and restarts segments on timestep boundaries: options
        # built from one configuration agree (pipelines.config.stream_config); a pair that does not is refused.
        options = options or SourceOptions(sample_rate=self.sync.sample_rate, segment_align=self.sync.hop)
        if (options.sample_rate, options.segment_align) != (self.sync.sample_rate, self.sync.hop):
            raise ValueError(
                f"the source's sample_rate {options.sample_rate} and segment_align {options.segment_align} must be "
                f"the sync's sample_rate {self.sync.sample_rate} and hop {self.sync.hop}"
            )
        # event clips: the source's recent packets, ``clip_keep`` seconds of them (PyAV sources only)
        self.ring = PacketRing(spec.stream_id, clip_keep) if clip_keep is not None else None
        self.source = Source(spec, options, on_state=on_state, ring=self.ring, onsets=early)
        self.assembler: TimestepAssembler | None = None
        self._on_info = on_info
        self._on_gap = on_gap  # called once the timesteps before a discontinuity have been yielded

    @property
    def stream_id(self) -> str:
        return self.source.spec.stream_id

    @property
    def dropped_video(self) -> int:
        """Video frames the source dropped so far (a live source whose consumer lagged)."""
        return self.source.dropped_video

    # What the analyzer asks of any stream; a stream captured in this process keeps its full frames itself.
    def scored(self, k: int) -> None:
        """Timesteps up to ``k`` are scored (nothing to let go of here: each frame holds its own picture; clips
        being recorded may write their packets up to there)."""
        if self.ring is not None:
            self.ring.progress((k + 1) * self.sync.hop)

    def pin(self, frame: VideoFrame) -> None:
        """``frame`` is an open event's new peak (its picture is kept by the frame itself)."""

    def snapshot(self, frame: VideoFrame, box: Box | None = None) -> Awaitable[bytes | None]:
        """``frame``'s full picture as JPEG with ``box`` drawn on it, on a thread when awaited (None when the
        source kept none)."""
        return asyncio.to_thread(encode_jpeg, frame, box=box)

    def clip(self, key: str, start: float, path: str) -> Awaitable[ClipInfo | str]:
        """Start event ``key``'s clip from the key frame before media time ``start``, into ``path`` (plus the
        container's extension); the awaitable gives the clip once :meth:`clip_end`'s end has passed (or the
        stream stopped), or why there is none."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ClipInfo | str] = loop.create_future()

        def done(result: ClipInfo | str) -> None:
            loop.call_soon_threadsafe(_settle, future, result)

        if self.ring is None:
            future.set_result("this stream keeps no packets for clips")
        else:
            self.ring.begin(key, start, path, done)
        return future

    def clip_end(self, key: str, until: float) -> None:
        """Event ``key``'s clip ends at media time ``until``."""
        if self.ring is not None:
            self.ring.end(key, until)

    async def __aiter__(self) -> AsyncIterator[Timestep]:
        assembler: TimestepAssembler | None = None
        gate = OnsetGate() if self.early else None
        async for item in self.source:
            gap: Discontinuity | None = None
            jumped = isinstance(item, (VideoFrame, AudioChunk)) and item.onset  # marked by the capture (Onsets)
            if isinstance(item, VideoFrame):
                out = assembler.push_video(item) if assembler else []
            elif isinstance(item, AudioChunk):
                out = assembler.push_audio(item) if assembler else []
            elif isinstance(item, Discontinuity):
                out = assembler.discontinuity(item.t) if assembler else []
                gap = item
                if gate is not None:
                    gate.reset()
            else:
                has_video, has_audio = item.video is not None, item.audio is not None
                if assembler is None:
                    assembler = self.assembler = TimestepAssembler(
                        self.stream_id, self.sync, has_video=has_video, has_audio=has_audio
                    )
                else:
                    assembler.set_tracks(has_video=has_video, has_audio=has_audio)
                if self._on_info is not None:
                    self._on_info(item)
                out = []
            for timestep in out:
                yield timestep
            if gate is not None and assembler is not None and gate.look(assembler.next_k, jumped):
                early = assembler.provisional()
                if early is not None:
                    yield early
            if gap is not None and self._on_gap is not None:
                self._on_gap(gap)
        if assembler is not None:
            for timestep in assembler.flush():
                yield timestep


def _settle(future: asyncio.Future[ClipInfo | str], result: ClipInfo | str) -> None:
    if not future.done():
        future.set_result(result)
