"""A source: one capture thread per connection, supervised from asyncio, with reconnects and state changes.

``async for item in Source(spec, options)`` yields :class:`~streamer.media.StreamInfo` each time the source
(re)opens, :class:`~streamer.media.Discontinuity` where the timeline restarts, and the media items
(:class:`~streamer.media.VideoFrame`, :class:`~streamer.media.AudioChunk`) in between. State changes
(connecting, online, reconnecting, offline, ended) go to ``on_state`` and :attr:`Source.state`.

* Files end (state ``ended``) or restart at the end of their data with ``loop``; a failure raises
  :class:`~streamer.errors.SourceError`.
* Live sources reconnect after a failure, a stall (no data for ``stall_timeout``) or an end of stream, after a
  jittered exponential backoff; after ``offline_after`` failures in a row the state is ``offline`` and retries go
  on at the capped interval. A connection that opens and dies within ``healthy_after`` seconds counts as a
  failure in the same row (the backoff keeps growing); one that stayed up longer starts a new row. A
  reconnected segment starts at the wall-clock time elapsed since the stream began,
  so an outage shows as a gap in a timeline that never goes backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import SourceCertificateError, SourceError, SourceSpecError, SourceUnsupportedError
from .handoff import DropPolicy, MediaQueue
from .media import AudioChunk, Discontinuity, SourceState, StateChange, StreamInfo, VideoFrame
from .onsets import Onsets
from .options import SourceOptions
from .spec import SourceKind, SourceSpec
from .timeline import Timeline
from .worker import Ended, Failed, Opened, Worker, WorkerContext, WorkerItem, run_worker

if TYPE_CHECKING:
    from .clips import PacketRing

log = logging.getLogger(__name__)

SourceItem = StreamInfo | Discontinuity | VideoFrame | AudioChunk


def worker_for(spec: SourceSpec) -> Worker:
    """The capture function of a kind of source, once its parameters are checked (raises SourceSpecError)."""
    if spec.kind is SourceKind.SYNTHETIC:
        from .synthetic import SyntheticParams, run_synthetic

        SyntheticParams.parse(spec.stream_id, spec.params)
        return run_synthetic
    if spec.kind is SourceKind.CAMERA:
        from .camera import capture_config, run_camera

        capture_config(spec)
        return run_camera
    from .av_input import run_av

    return run_av


def backoff_delay(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff, ``initial * 2**(attempt-1)`` capped at ``cap``, jittered by +-25%."""
    base = min(cap, initial * 2 ** max(0, attempt - 1))
    return float(base * rng.uniform(0.75, 1.25))


@dataclass
class SourceStats:
    connects: int = 0
    failures: int = 0
    dropped_video: int = 0
    dropped_audio: int = 0


class Source:
    def __init__(
        self,
        spec: SourceSpec,
        options: SourceOptions | None = None,
        *,
        on_state: Callable[[StateChange], None] | None = None,
        worker: Worker | None = None,
        ring: PacketRing | None = None,
        onsets: bool = False,
    ) -> None:
        self.spec = spec
        self.ring = ring  # event clips: the capture keeps the stream's recent packets here
        self.onsets = onsets  # the capture marks items that change suddenly (streamer.onsets.Onsets)
        self.options = options or SourceOptions()
        self.timeline = Timeline()
        self.state: SourceState | None = None
        self.info: StreamInfo | None = None
        self.stats = SourceStats()
        self._on_state = on_state
        self._worker = worker or worker_for(spec)
        self._rng = random.Random()
        self._started: float | None = None  # monotonic time of the first successful open
        self._queue: MediaQueue[WorkerItem] | None = None  # the current connection's hand-off queue

    @property
    def dropped_video(self) -> int:
        """Video frames dropped so far (live sources, consumer too slow), the current connection included."""
        return self.stats.dropped_video + (self._queue.dropped_video if self._queue is not None else 0)

    def _set_state(self, state: SourceState, detail: str = "", retry_in: float | None = None) -> None:
        self.state = state
        if self._on_state is not None:
            self._on_state(StateChange(self.spec.stream_id, state, detail, retry_in, time.time()))

    def _next_anchor(self, *, gap: bool) -> float:
        """Where a new segment starts: right after the data so far for a loop; after a failure (``gap``), at the
        next timestep boundary, and no earlier than the wall time elapsed since the stream began if live."""
        anchor = self.timeline.end
        if not gap:
            return anchor
        if self.spec.is_live and self._started is not None:
            anchor = max(anchor, time.monotonic() - self._started)
        align = self.options.segment_align
        return math.ceil(anchor / align - 1e-9) * align if anchor > 0 else 0.0

    async def __aiter__(self) -> AsyncIterator[SourceItem]:
        spec, options = self.spec, self.options
        live = spec.is_live
        policy = DropPolicy.DROP_OLDEST_VIDEO if live else DropPolicy.BLOCK
        wake_batch = 1 if live or options.realtime else max(1, options.queue_size // 4)
        loop = asyncio.get_running_loop()
        failures = 0
        first = True
        gap = False  # the previous segment failed: the next one starts after a gap in the timeline
        self._set_state(SourceState.CONNECTING)
        while True:
            anchor = 0.0 if first else self._next_anchor(gap=gap)
            boundaries = (options.segment_align, options.sample_rate) if wake_batch == 1 else None
            queue: MediaQueue[WorkerItem] = MediaQueue(
                loop, options.queue_size, policy, wake_batch=wake_batch, boundaries=boundaries
            )
            self._queue = queue
            onsets = Onsets(options.sample_rate) if self.onsets else None  # a connection's items start afresh
            ctx = WorkerContext(spec, options, self.timeline, anchor, queue, threading.Event(), self.ring, onsets)
            thread = threading.Thread(
                target=run_worker, args=(self._worker, ctx), name=f"capture-{spec.stream_id}", daemon=True
            )
            thread.start()
            outcome: Ended | Failed | None = None
            opened_at: float | None = None  # monotonic time this connection opened
            try:
                while outcome is None:
                    timeout = (options.stall_timeout if opened_at is not None else options.open_timeout) + 1.0
                    try:
                        async with asyncio.timeout(timeout if live else None):
                            batch = await queue.get_batch()
                    except TimeoutError:
                        outcome = Failed(SourceError(spec.stream_id, f"stalled: no data for {timeout:.0f} s"))
                        break
                    for item in batch:
                        if isinstance(item, (VideoFrame, AudioChunk)):
                            yield item
                        elif isinstance(item, Opened):
                            opened_at = time.monotonic()
                            self.stats.connects += 1
                            self.info = item.info
                            if self._started is None:
                                self._started = time.monotonic()
                            self._set_state(SourceState.ONLINE)
                            yield item.info
                            if gap:
                                yield Discontinuity(anchor, "reconnected")
                            first = gap = False
                        else:
                            outcome = item
                            break
            finally:
                ctx.quit.set()
                self.stats.dropped_video += queue.dropped_video
                self.stats.dropped_audio += queue.dropped_audio
                self._queue = None
                queue.close()
                await asyncio.to_thread(thread.join, 1.0)

            assert outcome is not None  # the loop above only ends with one
            if isinstance(outcome, Ended):
                if options.loop and not live and spec.kind is not SourceKind.NETWORK:
                    continue  # the next pass continues the timeline seamlessly
                # A network source that declares a duration (HLS video on demand, a server playing a file) has
                # ended only once its media reached that duration; ending sooner is a failure (server gone).
                declared = self.info.duration if self.info is not None else None
                finite = declared is not None and self.timeline.end >= declared - 1.0
                if finite or not (options.reconnect and spec.kind in (SourceKind.NETWORK, SourceKind.CAMERA)):
                    self._set_state(SourceState.ENDED)
                    return
                error = SourceError(spec.stream_id, f"{spec.redacted}: stream ended")
            else:
                error = outcome.error
            self.stats.failures += 1
            # retrying cannot mend a malformed source or an untrusted certificate, nor give FFmpeg what it lacks
            permanent = isinstance(error, (SourceSpecError, SourceUnsupportedError, SourceCertificateError))
            if opened_at is not None and time.monotonic() - opened_at >= options.healthy_after:
                failures = 0  # it worked for a while: back off from the start again
            if permanent or not live or not options.reconnect or (first and options.fail_fast):
                self._set_state(SourceState.OFFLINE if live else SourceState.ENDED, error.cause)
                raise error
            failures += 1
            delay = backoff_delay(failures, options.backoff_initial, options.backoff_max, self._rng)
            state = SourceState.OFFLINE if failures >= options.offline_after else SourceState.RECONNECTING
            log.warning("%s; retrying in %.1f s", error, delay)
            self._set_state(state, error.cause, delay)
            if not first:
                gap = True
                yield Discontinuity(self.timeline.end, error.cause)
            await asyncio.sleep(delay)


async def first_info(source: Source) -> StreamInfo:
    """Open a source just long enough to learn what it carries."""
    iterator = aiter(source)
    try:
        async for item in iterator:
            if isinstance(item, StreamInfo):
                return item
    finally:
        with contextlib.suppress(Exception):
            await iterator.aclose()  # type: ignore[attr-defined]
    raise SourceError(source.spec.stream_id, "ended before it could be opened")
