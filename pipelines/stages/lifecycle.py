"""One stream's life in the analyzer: one explicit state, the transitions allowed between them, and the facts
that are not states.

::

    STARTING --(prepared)--> READY --(source task started)--> RUNNING --(source task ended)--> ENDED
        |                                                                                        |
        +--(preparation failed: unregistered at once)--> RELEASED         (every timestep scored, |
                                                            ^              open event closed)     v
                                                            +---- RELEASING <--(removed)----- FLUSHED

==========  =================================================================================================
state       what it means
==========  =================================================================================================
STARTING    ``add_stream`` is preparing it (carried-over model state, its ingest process): its lane, slot and
            detector exist, but ``run()`` must not start its source yet
READY       prepared; its source starts when ``run()`` does (the streams of the configuration start here)
RUNNING     its source task reads timesteps into its lane
ENDED       its source task ended (the media ended, the source failed, ``stop()`` or ``remove_stream()`` cut it
            short) and its lane is closed; what is still queued is scored
FLUSHED     every timestep is scored and its detector flushed (an open event ended). The end for a stream that
            is not removed: it stays listed with its counters
RELEASING   removed and flushed: its last snapshots, its capture and its model slot are being let go
RELEASED    gone from the analyzer
==========  =================================================================================================

:meth:`StreamRuntime.advance` refuses any other transition with :class:`LifecycleError`: a bug in the order of
the analyzer's steps is loud instead of a stream that never finishes.

Facts that are not states, since they can hold in several of them: ``removed`` (``remove_stream`` was asked: a
running source is cut short, and FLUSHED leads on to RELEASING), ``lost`` (a discontinuity while RUNNING: its
open event ends once the timesteps from before are scored; the stream itself goes on), ``carried_over``,
``opened`` (its source opened at least once), ``last_error`` (the last cause its source gave) and ``error`` (the
failure that ended it).
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field

from pipelines.config import StreamConfig
from pipelines.stages.batcher import Lane
from pipelines.stages.events import Ended, EndReason, Event, EventDetector
from pipelines.stages.stats import Stamps
from pipelines.stages.zones import ZoneEvents
from streamer.errors import SourceError
from streamer.ingest import RemoteStream
from streamer.media import SourceState, StateChange, StreamInfo, Timestep
from streamer.stream import Stream


class StreamState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    RUNNING = "running"
    ENDED = "ended"
    FLUSHED = "flushed"
    RELEASING = "releasing"
    RELEASED = "released"


S = StreamState
TRANSITIONS: dict[StreamState, frozenset[StreamState]] = {
    S.STARTING: frozenset({S.READY, S.RELEASED}),
    S.READY: frozenset({S.RUNNING}),
    S.RUNNING: frozenset({S.ENDED}),
    S.ENDED: frozenset({S.FLUSHED}),
    S.FLUSHED: frozenset({S.RELEASING}),
    S.RELEASING: frozenset({S.RELEASED}),
    S.RELEASED: frozenset(),
}


class LifecycleError(RuntimeError):
    """A transition not in :data:`TRANSITIONS`: a bug in the analyzer, never a source's fault."""


@dataclass(slots=True)
class Job:
    """What a lane holds: a timestep and the wall times it reached each stage."""

    ts: Timestep
    stamps: Stamps


@dataclass(eq=False)
class StreamRuntime:
    """One analyzed stream: its settings, its lane, its event detector (and its zones' detectors), its state and
    the facts about it."""

    config: StreamConfig
    lane: Lane[Job]
    detector: EventDetector
    state: StreamState = StreamState.READY
    stream: Stream | RemoteStream | None = None
    info: StreamInfo | None = None
    error: SourceError | None = None  # the failure that ended its source
    removed: bool = False  # remove_stream() was asked: cut short if running, released once flushed
    lost: bool = False  # its source was lost while running: an open event ends once the timesteps before are scored
    carried_over: bool = False  # it started from a checkpoint taken elsewhere
    opened: bool = False  # its source opened at least once
    last_error: str = ""  # the last cause its source gave (a failed attempt to open, a lost connection)
    scored_k: int = -1  # its last timestep scored (a provisional one of that timestep or before is out of date)
    snapshots: set[asyncio.Task[None]] = field(default_factory=set)  # its snapshots being taken
    task: asyncio.Task[None] | None = None
    zones: ZoneEvents = field(init=False)  # its zones' detectors (none: a stream without zones)

    def __post_init__(self) -> None:
        self.zones = ZoneEvents(self.config)

    @property
    def stream_id(self) -> str:
        return self.config.stream_id

    def flush(self, reason: EndReason = "stream ended") -> list[Event | Ended]:
        """Its source ended or was lost and every timestep from before is scored: its open events end, the
        stream's and its zones'."""
        return self.detector.flush(reason) + self.zones.flush(reason)

    def advance(self, to: StreamState) -> None:
        """Move to ``to``; raises :class:`LifecycleError` for a transition the table does not allow."""
        if to not in TRANSITIONS[self.state]:
            raise LifecycleError(f"stream '{self.stream_id}': cannot go from {self.state.name} to {to.name}")
        self.state = to

    @property
    def drops(self) -> tuple[int, int]:
        """``(video frames dropped by its capture, timesteps dropped waiting for the model)``."""
        return (self.stream.dropped_video if self.stream is not None else 0), self.lane.dropped

    @property
    def done(self) -> bool:
        """Its source task ended (or it never got one)."""
        return self.state in (S.ENDED, S.FLUSHED, S.RELEASING, S.RELEASED)

    @property
    def flushed(self) -> bool:
        """Every timestep of it is scored and its detector flushed."""
        return self.state in (S.FLUSHED, S.RELEASING, S.RELEASED)

    def heard(self, change: StateChange) -> None:
        """Its source's state changed: whether it opened, and the last cause it gave, for :attr:`never_opened`."""
        self.opened |= change.state is SourceState.ONLINE
        self.last_error = change.detail or self.last_error

    @property
    def never_opened(self) -> SourceError | None:
        """Why its source never opened (its last error), for a stream that was not removed and did not fail;
        None when it opened, failed or was removed, and when no attempt to open it failed before the run was
        stopped (Ctrl-C during start-up is not a failing source)."""
        if self.opened or self.error is not None or self.removed or not self.last_error:
            return None
        return SourceError(self.stream_id, self.last_error)
