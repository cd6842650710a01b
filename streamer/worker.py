"""What every capture thread shares: its context, the messages it sends, pacing and error conversion.

A worker is a plain function ``worker(ctx)`` run on its own named thread for one connection (one segment). It
sends :class:`Opened` once the source is open, then media items, and returns at the end of the media; it
raises :class:`~streamer.errors.SourceError` on failure. :func:`run_worker` wraps it so that the asyncio side
always receives exactly one of :class:`Ended` or :class:`Failed`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .errors import SourceError
from .handoff import DropPolicy, MediaQueue, QueueClosed
from .media import AudioChunk, StreamInfo, VideoFrame
from .onsets import Onsets
from .options import SourceOptions
from .spec import SourceSpec
from .timeline import Timeline

if TYPE_CHECKING:
    from .clips import PacketRing

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Opened:
    info: StreamInfo


@dataclass(frozen=True, slots=True)
class Ended:
    reason: str = "end of media"


@dataclass(frozen=True, slots=True)
class Failed:
    error: SourceError


WorkerItem = VideoFrame | AudioChunk | Opened | Ended | Failed


@dataclass(frozen=True, slots=True)
class WorkerContext:
    spec: SourceSpec
    options: SourceOptions
    timeline: Timeline
    anchor: float  # stream time at which this segment starts
    queue: MediaQueue[WorkerItem]
    quit: threading.Event
    ring: PacketRing | None = None  # the stream's recent packets, for event clips (PyAV sources)
    onsets: Onsets | None = None  # a live stream that decides early: its items' jump tests (streamer.onsets)

    def send(self, item: VideoFrame | AudioChunk) -> None:
        if self.onsets is not None and self.onsets.jumped(item):
            item = replace(item, onset=True)  # the hand-off wakes its consumer for it at once
        self.queue.put(item)

    def opened(self, info: StreamInfo) -> None:
        if not info.live:  # e.g. recorded media over HTTP: analyzed like a file, waiting instead of dropping
            self.queue.policy = DropPolicy.BLOCK
        self.queue.put(Opened(info), control=True)

    def error(self, cause: str) -> SourceError:
        return SourceError(self.spec.stream_id, cause)


Worker = Callable[[WorkerContext], None]


def run_worker(worker: Worker, ctx: WorkerContext) -> None:
    """Thread body: run ``worker`` and report how it ended. Never raises."""
    try:
        worker(ctx)
    except QueueClosed:
        return  # the consumer has gone
    except SourceError as exc:
        _report(ctx, Failed(exc))
    except Exception as exc:
        log.exception("stream '%s': unexpected error in the capture thread", ctx.spec.stream_id)
        _report(ctx, Failed(ctx.error(f"unexpected error: {type(exc).__name__}: {exc}")))
    else:
        _report(ctx, Ended())


def _report(ctx: WorkerContext, item: Ended | Failed) -> None:
    with contextlib.suppress(QueueClosed):
        ctx.queue.put(item, control=True)


class Pacer:
    """Holds items back until their media time, so a file plays like a live source."""

    def __init__(self, quit_event: threading.Event) -> None:
        self._quit = quit_event
        self._origin: tuple[float, float] | None = None  # (media time, monotonic time)

    def wait(self, t: float) -> None:
        if self._origin is None:
            self._origin = (t, time.monotonic())
            return
        delay = self._origin[1] + (t - self._origin[0]) - time.monotonic()
        if delay > 0:
            self._quit.wait(delay)
