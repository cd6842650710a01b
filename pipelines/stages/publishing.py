"""What the analyzer tells, and to whom, in one place: the messages it queues for the broker, the events-out file,
its outputs (observers) and the run's hooks (the terminal).

* Into the outbox (:mod:`pipelines.stages.outbox`), only when a broker is configured: each event (start, update,
  end; QoS 1), each timestep's scores with ``--scores`` (QoS 0, not retained), a stream's status and its latest
  event snapshot (a JPEG of the event's peak frame, where the picture changed at the peak drawn as a box; both
  retained), each event's clip once written (``--clips``; QoS 1), and the stats every ``stats_interval``
  seconds. Topics: :mod:`pipelines.stages.topics`.
* Each event message as a line of JSON in the ``--events-out`` file, flushed at once.
* The same facts to the observers (:mod:`pipelines.outputs.observers`) and the :class:`Hooks`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.config import AnalyzerConfig
from pipelines.outputs.lines import AppendedLines
from pipelines.stages.events import Ended, Event, Scores
from pipelines.stages.lifecycle import StreamRuntime
from pipelines.stages.outbox import Kind, Message, Outbox
from pipelines.stages.stats import PipelineStats, Stamps
from pipelines.stages.tagging import filtered, tags_payload
from pipelines.stages.topics import Topics
from streamer.errors import ConfigError
from streamer.media import Box, SourceState, StateChange, VideoFrame

if TYPE_CHECKING:
    from pipelines.outputs.clips import ClipKeeper
    from pipelines.outputs.observers import Observer
    from pipelines.stages.tagging import Tag, Tagging

log = logging.getLogger("streamer")

Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]
DISABLED = "disabled"  # a stream's status while its detection is off and its source online


@dataclass
class Hooks:
    """Callbacks for the terminal: each event message, and progress (stream id -> media time reached)."""

    on_event: Callable[[Event], None] | None = None
    on_progress: Callable[[dict[str, float]], None] | None = None
    on_state: Callable[[StateChange], None] | None = None


@dataclass(eq=False)
class Publishing:
    """``broker``: a broker is configured (else nothing is queued); ``snapshots``: take each ended event's peak
    frame as a JPEG (a broker publishes it or an observer shows it); ``spawn``: starts a background task the
    analyzer waits for at its end (a snapshot being taken)."""

    config: AnalyzerConfig
    topics: Topics
    outbox: Outbox
    stats: PipelineStats
    _: KW_ONLY
    broker: bool
    observers: Observer
    hooks: Hooks
    snapshots: bool
    spawn: Spawn
    clips: ClipKeeper | None = None
    tagging: Tagging | None = None
    _events_out: AppendedLines | None = field(default=None, init=False)
    # per stream: the snapshots asked for so far, and the latest of them published (an older one finishing later,
    # when several are encoded at once, is dropped: the retained snapshot is the last event's)
    _snapshots_asked: dict[str, int] = field(default_factory=dict, init=False)
    _snapshot_shown: dict[str, int] = field(default_factory=dict, init=False)
    _states: dict[str, SourceState] = field(default_factory=dict, init=False)  # each stream's last source state
    _disabled: set[str] = field(default_factory=set, init=False)  # streams whose detection is off
    # (stream, zone or None) -> its tag filters (only, ignore)
    _filters: dict[tuple[str, str | None], tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict,
                                                                                            init=False)  # fmt: skip

    def open(self) -> None:
        """Open the events-out file (appending), for the run."""
        if self.config.events_out is not None:
            self._events_out = AppendedLines(self.config.events_out)

    def close(self) -> None:
        if self._events_out is not None:
            self._events_out.close()
            self._events_out = None

    # -- per timestep and per batch -------------------------------------------------------------------------

    def scored(self, stream_id: str, scores: Scores, stamps: Stamps) -> None:
        """A timestep's scores, once its events are told: they are queued with ``--scores``, and its stamps
        (``published``: now) go into the stats."""
        if self.config.mqtt.scores and self.broker:
            self._queue(self.topics.scores(stream_id), _json(scores.as_dict()), "score", qos=0, retain=False)
        stamps.published = time.time()
        self.stats.record(stamps)
        self.observers.scored(stream_id, scores, stamps)

    def batch(self, size: int) -> None:
        self.stats.batch_sizes.append(size)
        self.observers.batch(size)

    def progress(self) -> None:
        if self.hooks.on_progress is not None:
            self.hooks.on_progress({sid: c.media_t for sid, c in self.stats.streams.items()})

    # -- events -----------------------------------------------------------------------------------------------

    def events(self, rt: StreamRuntime, messages: list[Event | Ended]) -> None:
        """What a stream's event detector said: an event that ended counts, and its peak frame becomes a
        snapshot (with its peak box drawn)."""
        for message in messages:
            event = message.event if isinstance(message, Ended) else message
            if isinstance(message, Ended):
                if event.zone is None:
                    self.stats.stream(event.stream).events += 1
                # a zone's event (event.zone) takes none: the stream's one retained snapshot is its own events'
                if message.peak_frame is not None and self.snapshots and event.zone is None:
                    self._take_snapshot(rt, message.peak_frame, message.peak_box)
            payload = event.as_dict()
            if self.tagging is not None:  # a zone's event too: the stream's sound, the picture where it changed
                self._filters[event.stream, event.zone] = _filters_of(rt, event.zone)
                # a zone's detector keeps no pictures: the stream's event's best one, cropped to the zone's change
                if isinstance(message, Ended):
                    peak = message.peak_frame if event.zone is None else rt.detector.peak_frame
                    self._tag_picture(rt, event, peak, message.peak_box or event.box)
                    tags = self.tagging.ended(event)
                    payload["tags"] = tags_payload(tags)
                    self._filtered(payload, event, tags)
                    for label in tags:  # the label's sensor: off with the event
                        self._tag_state(event, label, None)
                else:
                    self.tagging.started(event)
                    self._tag_picture(rt, event, rt.detector.peak_frame, event.box)
            if self.clips is not None and event.zone is None:  # a zone's event is in its stream's clip
                if isinstance(message, Ended):
                    payload["clip"] = self.clips.ended(rt, event)
                else:
                    self.clips.started(rt, event)
            self._tell(event, payload)
            self.observers.event(event)
            if self.hooks.on_event is not None:
                self.hooks.on_event(event)

    def _tell(self, event: Event, payload: dict[str, Any]) -> None:
        """An event message (start, update, end) on its stream's or zone's events topic and in ``--events-out``."""
        self._queue(self.topics.events(event.stream, event.zone), _json(payload), "event", qos=1, retain=False)
        if self._events_out is not None:
            self._events_out.write(json.dumps(payload))

    def tagged(self, event: Event, tags: dict[str, Tag]) -> None:
        """An event's tags changed (:mod:`pipelines.stages.tagging`): its ``update`` message, each new label's
        state (on, or off at once for an event that has ended), the observers."""
        if self.tagging is None:
            return
        told = tags_payload(tags)
        payload = {"type": "update", "id": event.id, "stream": event.stream, "t": event.t, "wall_time": time.time(),
                   "tags": told}  # fmt: skip
        self._filtered(payload, event, tags)
        if event.zone is not None:
            payload["zone"] = event.zone
        self._tell(event, payload)
        still_open = self.tagging.is_open(event.id)
        for label, tag in tags.items():
            self._tag_state(event, label, tag)
            if not still_open:
                self._tag_state(event, label, None)
        self.observers.tagged(event, told)

    def _tag_picture(self, rt: StreamRuntime, event: Event, frame: VideoFrame | None, box: Box | None) -> None:
        """With a detector, the event's best picture (full resolution, nothing drawn) to the tagging."""
        if self.tagging is None or not self.tagging.pictures or frame is None:
            return
        jpeg = self._jpeg(rt, frame, None, "tags: no picture")
        if jpeg is None:
            return
        wait = self.tagging.picture(event, jpeg, box)
        if wait is not None:
            self.spawn(wait, "tag picture")

    def _filtered(self, payload: dict[str, Any], event: Event, tags: dict[str, Tag]) -> None:
        """``filtered`` in an end or update message, where the stream has filters (``only``, ``ignore``)."""
        only, ignore = self._filters.get((event.stream, event.zone), ((), ()))
        verdict = filtered(tags, only, ignore)
        if verdict is not None:
            payload["filtered"] = verdict

    def _tag_state(self, event: Event, label: str, tag: Tag | None) -> None:
        """``{prefix}/{stream}/tags/{label}``, retained: ON while an event of the stream (not of a zone) with that
        tag is open, else OFF (never for a label the stream ignores)."""
        if event.zone is not None or label in self._filters.get((event.stream, None), ((), ()))[1]:
            return
        state = {"state": "ON" if tag is not None else "OFF", "id": event.id, "t": event.t}
        if tag is not None:
            state["confidence"] = round(tag.confidence, 3)
        try:
            topic = self.topics.tag(event.stream, label)
        except ConfigError:
            return  # a label that cannot be a topic level: in the messages only
        self._queue(topic, _json(state), "state")

    def _take_snapshot(self, rt: StreamRuntime, frame: VideoFrame, box: Box | None) -> None:
        """Ask for the peak frame's snapshot now (an ingest process is told before a later pin, of the next
        event's peak in the same batch, replaces the picture it keeps); it is awaited and published in a task."""
        snapshot = self._jpeg(rt, frame, box, "snapshot failed")
        if snapshot is None:
            return
        n = self._snapshots_asked[rt.stream_id] = self._snapshots_asked.get(rt.stream_id, 0) + 1
        task = self.spawn(self._snapshot(rt.stream_id, n, snapshot), "snapshot")
        rt.snapshots.add(task)
        task.add_done_callback(rt.snapshots.discard)

    @staticmethod
    def _jpeg(rt: StreamRuntime, frame: VideoFrame, box: Box | None, failed: str) -> Awaitable[bytes | None] | None:
        """``frame``'s full picture as a JPEG (``box`` drawn), asked for now and awaited later; None where the
        stream cannot be asked (one warning line: ``failed`` and why)."""
        if rt.stream is None:
            return None
        try:
            return rt.stream.snapshot(frame, box)
        except Exception as exc:  # a picture is a nicety: never let it take the pipeline down
            log.warning("stream '%s': %s: %s", rt.stream_id, failed, exc)
            return None

    async def _snapshot(self, stream_id: str, n: int, snapshot: Awaitable[bytes | None]) -> None:
        """The stream's ``n``-th event snapshot: its peak frame as a JPEG with where it changed at the peak drawn
        on it, published retained unless a later one was. Encoded off the event loop (a thread, or the stream's
        ingest process)."""
        try:
            jpeg = await snapshot
        except Exception as exc:  # a snapshot is a nicety: never let it take the pipeline down
            log.warning("stream '%s': snapshot failed: %s", stream_id, exc)
            return
        if jpeg is not None and n > self._snapshot_shown.get(stream_id, 0):
            self._snapshot_shown[stream_id] = n
            self.observers.snapshot(stream_id, jpeg)
            if self.config.mqtt.snapshots:
                self._queue(self.topics.snapshot(stream_id), jpeg, "state")

    def clip_written(self, stream_id: str, clip: dict[str, Any]) -> None:
        """An event's clip is complete: the ``clip`` message, and the observers."""
        self._queue(self.topics.clip(stream_id), _json(clip), "event", qos=1, retain=False)
        self.observers.clip(stream_id, clip)

    # -- statuses -----------------------------------------------------------------------------------------------

    def state_changed(self, change: StateChange) -> None:
        """A source's state changed: every change is heard, every one but ``connecting`` is published."""
        self.stats.stream(change.stream_id).state = change.state.value
        if self.hooks.on_state is not None:
            self.hooks.on_state(change)
        if change.state is not SourceState.CONNECTING:
            self.status(change.stream_id, change.state)

    def status(self, stream_id: str, state: SourceState) -> None:
        """A stream's retained status (``disabled`` for an online stream whose detection is off)."""
        self.stats.stream(stream_id).state = state.value
        self.observers.state(stream_id, state)
        self._states[stream_id] = state
        shown = DISABLED if state is SourceState.ONLINE and stream_id in self._disabled else state.value
        self._queue(self.topics.stream_status(stream_id), shown.encode(), "status")

    def enabled(self, stream_id: str, on: bool) -> None:
        """A stream's detection was switched on or off (:mod:`pipelines.stages.control`): its status says so."""
        if on:
            self._disabled.discard(stream_id)
        else:
            self._disabled.add(stream_id)
        state = self._states.get(stream_id)
        if state is not None:
            self.status(stream_id, state)

    def queue_state(self, topic: str, payload: bytes, retain: bool) -> None:
        """A control message (a stream's live settings, retained; a command's result, not)."""
        self._queue(topic, payload, "state", retain=retain)

    # -- stats ----------------------------------------------------------------------------------------------------

    async def report_every_interval(self, streams: Mapping[str, StreamRuntime]) -> None:
        while True:
            await asyncio.sleep(self.config.mqtt.stats_interval)
            self.report(streams)

    def report(self, streams: Mapping[str, StreamRuntime]) -> None:
        """The stats message (it resets the per-interval rates); the events the outbox dropped so far, logged."""
        drops = {
            sid: dict(zip(("dropped_frames", "dropped_timesteps"), rt.drops, strict=True))
            for sid, rt in streams.items()
        }
        if self.broker:
            report = self.stats.report(drops, self.outbox.counters(), self.outbox.event_delivery_ms)
        else:
            report = self.stats.report(drops)
        if self.tagging is not None:  # what the tags cost so far (pipelines.stages.tagging)
            t = self.tagging
            report["tags"] = {"tagged": t.tagged, "dropped": t.drops, "cpu_s": round(t.cpu_s, 3)}
        if self.outbox.overflow:
            log.warning("mqtt: %d event(s) dropped so far: the outbox was full", self.outbox.overflow)
        self._queue(self.topics.stats, _json(report), "state", qos=0, retain=False)

    def _queue(self, topic: str, payload: bytes, kind: Kind, *, qos: int = 1, retain: bool = True) -> None:
        if self.broker:
            self.outbox.put(Message(topic, payload, qos, retain, kind, time.time()))


def _filters_of(rt: StreamRuntime, zone: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The tag filters (only, ignore) of a stream's events, or of one of its zones'."""
    if zone is None:
        return rt.config.only, rt.config.ignore
    found = next((z for z in rt.config.zones if z.name == zone), None)
    return ((), ()) if found is None else (found.only, found.ignore)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
