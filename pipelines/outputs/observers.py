"""What watches an analyzer from the side: Home Assistant discovery, Prometheus metrics, the live web view.

An :class:`Observer` is told, on the analyzer's event loop, what happens: streams joining and leaving, each
scored timestep, each event message, status changes, snapshots, the MQTT connection. Its methods must return
quickly and never raise (they run between batches); work that waits goes in :meth:`Observer.run`, a task in
the analyzer's task group, cancelled once the last timestep is published.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Protocol

from streamer.media import SourceState

if TYPE_CHECKING:
    from pipelines.config import StreamConfig
    from pipelines.stages.events import Event, Scores
    from pipelines.stages.outbox import OutboxCounts
    from pipelines.stages.stats import Stamps, StreamCounts

log = logging.getLogger("streamer")


def streamer_version() -> str:
    try:
        return version("streamer")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


class AnalyzerView(Protocol):
    """What an output may read of the analyzer (:class:`pipelines.analyzer.Analyzer` is one): copies of its
    counters taken when asked (frozen dataclasses, a read-only mapping), never one of its live objects, so an
    output cannot change the analysis, nor see a counter move while it reads. Outputs import this, never the
    analyzer."""

    @property
    def device_name(self) -> str:
        """Where the model runs (``cpu``, ``cuda:0``, ...)."""
        ...

    @property
    def mqtt_connected(self) -> bool: ...

    def stream_counts(self) -> Mapping[str, StreamCounts]:
        """Each stream's counters (frames, timesteps, events, state, media time, drops), by stream id."""
        ...

    def outbox_counts(self) -> OutboxCounts:
        """What waits for the broker and what was dropped or given up."""
        ...


class Observer:
    """Every method does nothing here: a subclass overrides what it needs."""

    wants_snapshots = False  # take each event's snapshot even when no broker publishes it

    def stream_added(self, stream: StreamConfig) -> None: ...

    def stream_removed(self, stream_id: str) -> None: ...

    def scored(self, stream_id: str, scores: Scores, stamps: Stamps) -> None: ...

    def batch(self, size: int) -> None: ...

    def event(self, event: Event) -> None: ...

    def state(self, stream_id: str, state: SourceState) -> None: ...

    def snapshot(self, stream_id: str, jpeg: bytes) -> None: ...

    def clip(self, stream_id: str, clip: dict[str, Any]) -> None: ...

    def clip_failed(self, stream_id: str) -> None: ...

    def tagged(self, event: Event, tags: list[dict[str, Any]]) -> None: ...

    def settings_changed(self, stream: StreamConfig) -> None: ...

    async def run(self) -> None:
        """Background work while the analyzer runs (cancelled at its end)."""


class Observers(Observer):
    """Several observers as one; one that raises is logged once and the others still hear everything."""

    def __init__(self, observers: Iterable[Observer] = ()) -> None:
        self.items = list(observers)
        self._failed: set[int] = set()

    @property
    def wants_snapshots(self) -> bool:  # type: ignore[override]
        return any(o.wants_snapshots for o in self.items)

    def _each(self, name: str, *args: object) -> None:
        for o in self.items:
            try:
                getattr(o, name)(*args)
            except Exception:
                if id(o) not in self._failed:
                    self._failed.add(id(o))
                    log.exception("%s.%s failed (logged once)", type(o).__name__, name)

    def stream_added(self, stream: StreamConfig) -> None:
        self._each("stream_added", stream)

    def stream_removed(self, stream_id: str) -> None:
        self._each("stream_removed", stream_id)

    def scored(self, stream_id: str, scores: Scores, stamps: Stamps) -> None:
        self._each("scored", stream_id, scores, stamps)

    def batch(self, size: int) -> None:
        self._each("batch", size)

    def event(self, event: Event) -> None:
        self._each("event", event)

    def state(self, stream_id: str, state: SourceState) -> None:
        self._each("state", stream_id, state)

    def snapshot(self, stream_id: str, jpeg: bytes) -> None:
        self._each("snapshot", stream_id, jpeg)

    def clip(self, stream_id: str, clip: dict[str, Any]) -> None:
        self._each("clip", stream_id, clip)

    def clip_failed(self, stream_id: str) -> None:
        self._each("clip_failed", stream_id)

    def tagged(self, event: Event, tags: list[dict[str, Any]]) -> None:
        self._each("tagged", event, tags)

    def settings_changed(self, stream: StreamConfig) -> None:
        self._each("settings_changed", stream)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for o in self.items:
                tg.create_task(_guarded(o), name=f"observer-{type(o).__name__}")


async def _guarded(observer: Observer) -> None:
    """An observer's background work failing is logged; the analysis goes on without it."""
    try:
        await observer.run()
    except Exception:
        log.exception("%s stopped", type(observer).__name__)
