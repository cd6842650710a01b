"""``streamer run``: sources -> one dynamic batcher -> the model -> per-stream event detectors -> MQTT.

All stages are asyncio tasks in one ``TaskGroup`` (named ``source-ID``, ``model``, ``mqtt``, ``stats``):

* a source task per stream reads its timesteps (:class:`streamer.stream.Stream`: one capture thread per source)
  into its batcher lane (bounded: live streams drop their oldest timestep, files wait);
* the model task takes batches across streams (:mod:`pipelines.stages.batcher`), scores them on the model's
  worker thread (:mod:`pipelines.stages.inference`), runs each stream's event detector
  (:mod:`pipelines.stages.events`) and queues events, scores, snapshots and statuses in the outbox
  (:mod:`pipelines.stages.outbox`);
* the MQTT task drains the outbox into the broker (:mod:`pipelines.stages.mqtt`); the stats task reports every
  ``stats_interval`` seconds.

Each stream's life (starting, running, ended, flushed, released) is one explicit state with its transitions
(:mod:`pipelines.stages.lifecycle`). A failing stream logs one line naming it and the cause and ends alone; the
others go on. :meth:`Analyzer.stop` (SIGINT, SIGTERM) ends the sources (each one's status ``offline``), lets the
model finish what is queued, closes open events, flushes the outbox, publishes ``offline`` and returns a
:class:`RunSummary` whose exit code says what happened (:mod:`streamer.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from pipelines.config import AnalyzerConfig, StreamConfig
from pipelines.outputs.observers import Observer, Observers
from pipelines.stages.batcher import Batcher
from pipelines.stages.events import Ended, Event, EventDetector, Scores
from pipelines.stages.inference import ModelRunner
from pipelines.stages.lifecycle import Job, StreamRuntime, StreamState
from pipelines.stages.mqtt import Publisher
from pipelines.stages.outbox import Message, Outbox
from pipelines.stages.stats import PipelineStats, Stamps, percentiles
from pipelines.stages.topics import Topics
from streamer.errors import EXIT_NOT_OPENED, EXIT_OK, EXIT_SOURCE, EXIT_UNDELIVERED, SourceError
from streamer.ingest import IngestHub
from streamer.media import Discontinuity, SourceState, StateChange, StreamInfo, VideoFrame
from streamer.stream import Stream

if TYPE_CHECKING:
    from pipelines.outputs.metrics import Metrics
    from pipelines.outputs.web import WebServer
    from pipelines.outputs.webui import LiveView

log = logging.getLogger("streamer")

LIVE_LANE = 16  # timesteps a live stream may have waiting for the model before its oldest is dropped
FILE_LANE = 32  # a file waits beyond this; each timestep holds its decoded frames (snapshots)


@dataclass(frozen=True)
class RunSummary:
    events: int
    timesteps: int
    failed: tuple[SourceError, ...]
    undelivered: int  # messages left in the outbox at exit
    undelivered_events: int = 0  # events among them: never delivered
    never_opened: tuple[SourceError, ...] = ()  # streams whose source never opened, each with its last error

    @property
    def exit_code(self) -> int:
        """What happened (:mod:`streamer.errors`); when several apply, the lowest code wins: a source that
        failed, then one that never opened, then events not delivered."""
        if self.failed:
            return EXIT_SOURCE
        if self.never_opened:
            return EXIT_NOT_OPENED
        return EXIT_UNDELIVERED if self.undelivered_events else EXIT_OK


@dataclass
class Hooks:
    """Callbacks for the terminal: each event message, and progress (stream id -> media time reached)."""

    on_event: Callable[[Event], None] | None = None
    on_progress: Callable[[dict[str, float]], None] | None = None
    on_state: Callable[[StateChange], None] | None = None


class Analyzer:
    """``serve``: run until :meth:`stop` even with no stream left; streams come and go with :meth:`add_stream`
    and :meth:`remove_stream` (a cluster worker). Otherwise the run ends once every stream has. ``presence``:
    the topic level under the prefix for this process's own online/offline (:class:`pipelines.topics.Topics`)."""

    def __init__(
        self,
        config: AnalyzerConfig,
        hooks: Hooks | None = None,
        *,
        serve: bool = False,
        presence: str | None = None,
        observers: Sequence[Observer] = (),
        hub: IngestHub | None = None,
    ) -> None:
        self.config = config
        self.hooks = hooks or Hooks()
        self.topics = Topics(config.mqtt.prefix, presence)
        self.outbox = Outbox(config.mqtt.outbox_size)
        self.runner = ModelRunner(config.model)
        self.stats = PipelineStats(device=self.runner.device_name)
        self.batcher: Batcher[Job] = Batcher(config.model.max_batch, config.model.max_wait_ms / 1000)
        self.publisher = Publisher(config.mqtt, self.topics, self.outbox) if config.mqtt.url else None
        self.batcher.held = serve
        self.observers = self._observers(list(observers), presence)
        self.web: WebServer | None = None  # the HTTP endpoints (--metrics, --ui), while running
        self.streams: dict[str, StreamRuntime] = {}
        for sc in config.streams:
            self.runner.add_stream(sc).result()  # nothing is being scored yet: waiting here holds up no batch
            self._register(sc)
        self._tg: asyncio.TaskGroup | None = None
        self._stopping = False
        self._events_out: IO[str] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._scoring: set[str] = set()  # streams with timesteps in the batch being scored
        # the ingest processes (``hub``: its files' started already, so they opened while torch loaded)
        self._hub = hub
        if hub is None and config.ingest == "process":
            self._hub = IngestHub([sc.ingest() for sc in config.streams])

    # -- the read-only view its outputs get (pipelines.outputs.observers.AnalyzerView) ----------------------------

    @property
    def device_name(self) -> str:
        return self.runner.device_name

    @property
    def mqtt_connected(self) -> bool:
        return self.publisher is not None and self.publisher.connected.is_set()

    def drops(self, stream_id: str) -> tuple[int, int]:
        rt = self.streams.get(stream_id)
        if rt is None:
            return 0, 0
        return (rt.stream.dropped_video if rt.stream is not None else 0), rt.lane.dropped

    def _observers(self, items: list[Observer], presence: str | None) -> Observers:
        """Home Assistant discovery, the metrics and the web view, as configured, with ``items``."""
        c = self.config
        self.metrics: Metrics | None = None
        self.view: LiveView | None = None
        if c.homeassistant.discovery and self.publisher is not None:
            from pipelines.outputs.homeassistant import HomeAssistant

            ha = HomeAssistant(c.homeassistant, self.topics, self.outbox, registry=presence is None,
                               snapshots=c.mqtt.snapshots)  # fmt: skip
            self.publisher.listeners.append(ha)
            items.append(ha)
        if c.metrics is not None:
            from pipelines.outputs.metrics import Metrics

            self.metrics = Metrics(self)
            items.append(self.metrics)
        if c.ui is not None:
            from pipelines.outputs.webui import LiveView

            self.view = LiveView(self)
            items.append(self.view)
        observers = Observers(items)
        # an event's peak frame becomes a JPEG when a broker publishes it or an observer shows it
        self._snapshots = (c.mqtt.snapshots and self.publisher is not None) or observers.wants_snapshots
        return observers

    def _register(self, sc: StreamConfig, state: StreamState = StreamState.READY) -> StreamRuntime:
        live = sc.spec.is_live  # a file read with --realtime waits like a file, but its timesteps come one a hop
        lane = self.batcher.add_lane(sc.stream_id, LIVE_LANE if live else FILE_LANE, drop_oldest=live,
                                     paced=live or sc.source.realtime)  # fmt: skip
        weights = (sc.alpha, sc.beta) if self.runner.learned is None else (None, None)
        detector = EventDetector(sc.stream_id, sc.events, *weights)
        rt = self.streams[sc.stream_id] = StreamRuntime(sc, lane, detector, state)
        self.stats.stream(sc.stream_id)
        self.observers.stream_added(sc)
        return rt

    # -- control ------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """End every source now (SIGINT, SIGTERM); what is queued is still scored and published."""
        if self._stopping:
            return
        self._stopping = True
        log.info("stopping")
        self.batcher.release()
        for rt in self.streams.values():
            if rt.task is not None:
                rt.task.cancel()

    async def add_stream(self, sc: StreamConfig, state: dict[str, Any] | None = None) -> None:
        """Start analyzing another stream while running; ``state``: its checkpoint from elsewhere
        (:meth:`export_states`): its baselines go on instead of warming up again, and an event it had open
        there ends (reason ``source lost``)."""
        if sc.stream_id in self.streams:
            raise ValueError(f"stream '{sc.stream_id}' is already analyzed")
        if self._stopping:
            raise RuntimeError("the analyzer is stopping")
        await self.runner.add_stream(sc)  # on the model thread, between two batches (a new hop's model too)
        rt = self._register(sc, StreamState.STARTING)  # run() must not start its source before it is ready
        try:
            if state is not None:
                try:
                    await self.runner.import_async(sc.stream_id, state["model"])
                    rt.carried_over = True
                except (ValueError, KeyError) as exc:
                    log.warning("stream '%s': its carried-over model state does not fit (%s); it starts afresh",
                                sc.stream_id, exc)  # fmt: skip
                if state.get("event") is not None:
                    self._emit(rt, rt.detector.resume(state["event"]))
            if self._hub is not None:
                try:
                    await self._hub.add(sc.ingest())
                except OSError as exc:  # the process could not be spawned
                    raise SourceError(sc.stream_id, f"cannot start its ingest process: {exc}") from exc
        except BaseException:
            await self._discard(rt)  # an open lane with no source would keep the batcher, and stop(), waiting
            raise
        rt.advance(StreamState.READY)
        if self._tg is not None:  # else run() starts it
            self._start_source(self._tg, rt)

    async def _discard(self, rt: StreamRuntime) -> None:
        """A stream whose preparation failed never ran: it leaves at once, lane, counters, capture and slot."""
        sid = rt.stream_id
        rt.advance(StreamState.RELEASED)
        self.batcher.close_lane(rt.lane)
        del self.streams[sid]
        self.stats.streams.pop(sid, None)
        self.observers.stream_removed(sid)
        if self._hub is not None:
            await self._hub.remove(sid)  # its remote end, registered before the spawn failed
        await self.runner.release(sid)

    def remove_stream(self, stream_id: str) -> None:
        """Stop analyzing a stream: what it has queued is scored, an open event ends, then its slot is freed."""
        rt = self.streams.get(stream_id)
        if rt is None or rt.removed:
            return
        rt.removed = True
        if rt.task is not None:
            rt.task.cancel()

    def summary(self) -> dict[str, Any]:
        """Where each stream stands and the load, for a cluster's status (resets nothing, unlike the stats)."""
        streams: dict[str, Any] = {}
        for sid, rt in self.streams.items():
            c = self.stats.stream(sid)
            video = rt.info.video if rt.info is not None else None
            streams[sid] = {
                "state": c.state, "media_t": round(c.media_t, 3), "timesteps": c.timesteps, "events": c.events,
                "dropped_timesteps": rt.lane.dropped, "carried_over": rt.carried_over,
                "video": None if video is None else {"width": video.width, "height": video.height, "fps": video.fps},
            }  # fmt: skip
        sizes = self.stats.batch_sizes
        total = percentiles(self.stats.stage_ms["total"])
        return {
            "streams": streams,
            "batch_mean": round(sum(sizes) / len(sizes), 2) if sizes else None,
            "latency_p99_ms": total["p99"],
            "device": self.runner.device_name,
        }

    async def export_states(self) -> dict[str, dict[str, Any]]:
        """Every stream's checkpoint: its learned model state (``model``, taken between batches) and its open
        event (``event``, or None)."""
        models = await self.runner.export_async([sid for sid, rt in self.streams.items() if not rt.removed])
        return {
            sid: {"model": model, "event": self.streams[sid].detector.checkpoint()}
            for sid, model in models.items() if sid in self.streams
        }  # fmt: skip

    async def run(self) -> RunSummary:
        if self.config.events_out is not None:
            self._events_out = self.config.events_out.open("a", encoding="utf-8")
        try:
            if self.metrics is not None or self.view is not None:
                from pipelines.outputs.web import WebServer, start_endpoints  # aiohttp: only when asked for

                self.web = WebServer()
                await start_endpoints(self.web, self.metrics, self.view, self.config.metrics, self.config.ui)
            if self._hub is not None:
                await self._hub.start()  # those not started yet
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                mqtt_task = tg.create_task(self.publisher.run(), name="mqtt") if self.publisher else None
                stats_task = tg.create_task(self._stats_loop(), name="stats")
                observers_task = tg.create_task(self.observers.run(), name="observers")
                for rt in self.streams.values():
                    if rt.state is StreamState.READY:  # one being added (STARTING) starts its own once ready
                        self._start_source(tg, rt)
                await tg.create_task(self._model_loop(), name="model")
                stats_task.cancel()
                observers_task.cancel()
                if self._background:
                    await asyncio.wait(self._background, timeout=5)
                self._publish_stats()
                undelivered = undelivered_events = 0
                if self.publisher is not None and mqtt_task is not None and not await self.publisher.close(mqtt_task):
                    undelivered, undelivered_events = len(self.outbox), self.outbox.pending_events
                    log.warning(
                        "mqtt: %d message(s), %d of them events, not delivered to %s",
                        undelivered, undelivered_events, self.config.mqtt.display_url,
                    )  # fmt: skip
        finally:
            if self.web is not None:
                await self.web.close()
            if self._hub is not None:
                await self._hub.close()
            self.runner.close()
            if self._events_out is not None:
                self._events_out.close()
        failed = tuple(rt.error for rt in self.streams.values() if rt.error is not None)
        return RunSummary(
            events=sum(rt.detector.count for rt in self.streams.values()),
            timesteps=sum(c.timesteps for c in self.stats.streams.values()),
            failed=failed,
            undelivered=undelivered,
            undelivered_events=undelivered_events,
            never_opened=tuple(e for rt in self.streams.values() if (e := rt.never_opened) is not None),
        )

    # -- sources ------------------------------------------------------------------------------------------

    def _start_source(self, tg: asyncio.TaskGroup, rt: StreamRuntime) -> None:
        rt.advance(StreamState.RUNNING)
        rt.task = tg.create_task(self._source(rt), name=f"source-{rt.config.stream_id}")
        rt.task.add_done_callback(lambda _: self._source_gone(rt))
        if self._stopping or rt.removed:  # stopped or removed while it was being added
            rt.task.cancel()

    def _source_gone(self, rt: StreamRuntime) -> None:
        """A source task cancelled before it ran never reached its ``finally``: it ends here."""
        if rt.state is StreamState.RUNNING:
            self._source_ended(rt, cut_short=self._stopping or rt.removed)

    def _source_ended(self, rt: StreamRuntime, *, cut_short: bool, reached_duration: bool = False) -> None:
        """Its lane closes (what it queued is still scored). Its retained status says where it stopped: a source
        cut short by stop() or remove_stream() is ``offline``, a live one as well as a file (which would otherwise
        stay ``online``); one that reached ``--duration`` has ``ended``. A source that ended or failed on its own
        said so itself."""
        rt.advance(StreamState.ENDED)
        self.batcher.close_lane(rt.lane)
        if cut_short or reached_duration:
            self._publish_state(rt.stream_id, SourceState.OFFLINE if cut_short else SourceState.ENDED)
        self._flush_finished()  # nothing of it may be waiting: then no batch would come to flush it

    async def _source(self, rt: StreamRuntime) -> None:
        sc = rt.config
        counters = self.stats.stream(sc.stream_id)

        def on_info(info: StreamInfo) -> None:
            rt.info, rt.opened = info, True  # (its ``online`` may go unheard: a late listener gets the latest state)
            rt.lane.drop_oldest = info.live  # recorded media over HTTP waits like a file instead of dropping
            rt.lane.paced = info.live or (sc.source.realtime and not sc.spec.is_live)  # (as streamer.av_input paces)

        def on_gap(gap: Discontinuity) -> None:
            rt.lost = True
            self._end_if_lost(rt)

        if self._hub is not None:
            remote = rt.stream = self._hub.remotes[sc.stream_id]
            remote.on_state, remote.on_info, remote.on_gap = self._on_state, on_info, on_gap
        else:
            rt.stream = Stream(sc.spec, sc.source, sc.sync, on_state=self._on_state, on_info=on_info, on_gap=on_gap)
        duration = self.config.duration
        cut_short = reached_duration = False
        try:
            async with contextlib.aclosing(rt.stream.__aiter__()) as timesteps:  # type: ignore[type-var]
                async for ts in timesteps:
                    if duration is not None and ts.t >= duration - 1e-9:
                        reached_duration = True
                        break
                    now = time.time()
                    frames = [] if ts.video_repeated else ts.frames
                    counters.frames += len(frames)
                    decoded = max((f.wall_time for f in frames), default=ts.wall_time)
                    await self.batcher.put(rt.lane, Job(ts, Stamps(decoded=min(decoded, now), received=now)))
        except SourceError as exc:
            rt.error = exc
            log.error("error: %s", exc)
        except asyncio.CancelledError:
            if not (self._stopping or rt.removed):
                raise
            cut_short = True
        finally:
            self._source_ended(rt, cut_short=cut_short, reached_duration=reached_duration)

    def _on_state(self, change: StateChange) -> None:
        rt = self.streams.get(change.stream_id)
        if rt is not None:
            rt.heard(change)
        self.stats.stream(change.stream_id).state = change.state.value
        if self.hooks.on_state is not None:
            self.hooks.on_state(change)
        if change.state is not SourceState.CONNECTING:
            self._publish_state(change.stream_id, change.state)

    def _publish_state(self, stream_id: str, state: SourceState) -> None:
        self.stats.stream(stream_id).state = state.value
        self.observers.state(stream_id, state)
        self._queue(self.topics.stream_status(stream_id), state.value.encode(), "status")

    # -- model and events ---------------------------------------------------------------------------------

    async def _model_loop(self) -> None:
        while True:
            batch = await self.batcher.next_batch()
            if not batch:
                break
            batched = time.time()
            timesteps = [job.ts for _, job in batch]
            self._scoring = {ts.stream_id for ts in timesteps}
            try:
                result = await self.runner.score_async(timesteps)
            finally:
                self._scoring = set()
            inferred = time.time()
            self.stats.batch_sizes.append(len(batch))
            self.observers.batch(len(batch))
            scored: dict[str, int] = {}
            for i, (_, job) in enumerate(batch):
                job.stamps.batched, job.stamps.inferred = batched, inferred
                self._handle(job, result, i)
                scored[job.ts.stream_id] = job.ts.k
            for stream_id, k in scored.items():
                stream = self.streams[stream_id].stream
                if stream is not None:
                    stream.scored(k)  # an ingest process may let go of those timesteps' full frames
            self._flush_finished()
            if self.hooks.on_progress is not None:
                self.hooks.on_progress({sid: c.media_t for sid, c in self.stats.streams.items()})
        self._flush_finished()

    def _handle(self, job: Job, result: dict[str, np.ndarray], i: int) -> None:
        ts = job.ts
        rt = self.streams[ts.stream_id]
        scores = Scores(
            t=ts.t, hop=ts.hop, score=float(result["s"][i]), s_v=float(result["s_v"][i]),
            s_a=float(result["s_a"][i]), has_v=bool(result["has_v"][i]), has_a=bool(result["has_a"][i]),
        )  # fmt: skip
        if ts.reset:  # the first timestep after a reconnect: nothing open can continue across the outage
            self._end_lost(rt)
        counters = self.stats.stream(ts.stream_id)
        counters.timesteps += 1
        counters.media_t = ts.end
        frame = ts.frames[len(ts.frames) // 2] if ts.frames else None
        peak = rt.detector.peak_frame
        self._emit(rt, rt.detector.update(scores, frame))
        new_peak = rt.detector.peak_frame
        if new_peak is not None and new_peak is not peak and rt.stream is not None:
            rt.stream.pin(new_peak)  # an open event's peak: an ingest process keeps its picture
        if self.config.mqtt.scores and self.publisher is not None:
            self._queue(self.topics.scores(ts.stream_id), _json(scores.as_dict()), "score", qos=0, retain=False)
        job.stamps.published = time.time()
        self.stats.record(job.stamps)
        self.observers.scored(ts.stream_id, scores, job.stamps)

    def _end_lost(self, rt: StreamRuntime) -> None:
        """The source was lost and every timestep from before is scored: an open event ends there."""
        rt.lost = False
        self._emit(rt, rt.detector.flush("source lost"))

    def _end_if_lost(self, rt: StreamRuntime) -> None:
        """End an open event of a lost source once none of its timesteps is waiting or being scored."""
        if rt.lost and not rt.lane.pending and rt.config.stream_id not in self._scoring:
            self._end_lost(rt)

    def _flush_finished(self) -> None:
        for rt in list(self.streams.values()):
            self._end_if_lost(rt)
            if rt.state is StreamState.ENDED and not rt.lane.pending and rt.stream_id not in self._scoring:
                rt.advance(StreamState.FLUSHED)
                self._emit(rt, rt.detector.flush())
            if rt.removed and rt.state is StreamState.FLUSHED:
                rt.advance(StreamState.RELEASING)
                self._spawn(self._release(rt), "release")

    async def _release(self, rt: StreamRuntime) -> None:
        """A removed stream is gone for good once its last snapshots are taken (an ingest process keeps their
        pictures until its connection closes): its capture, slot and figures go."""
        sid = rt.config.stream_id
        if rt.snapshots:
            await asyncio.wait(rt.snapshots)
        if self._hub is not None:
            await self._hub.remove(sid)
        await self.runner.release(sid)  # on the model thread, after any batch of it still being scored
        rt.advance(StreamState.RELEASED)
        del self.streams[sid]
        self.stats.streams.pop(sid, None)
        self.observers.stream_removed(sid)

    def _emit(self, rt: StreamRuntime, messages: list[Event | Ended]) -> None:
        for message in messages:
            event = message.event if isinstance(message, Ended) else message
            if isinstance(message, Ended):
                self.stats.stream(event.stream).events += 1
                if message.peak_frame is not None and self._snapshots:
                    task = self._spawn(self._snapshot(rt, message.peak_frame), "snapshot")
                    rt.snapshots.add(task)
                    task.add_done_callback(rt.snapshots.discard)
            payload = event.as_dict()
            self._queue(self.topics.events(event.stream), _json(payload), "event", qos=1, retain=False)
            if self._events_out is not None:
                self._events_out.write(json.dumps(payload) + "\n")
                self._events_out.flush()
            self.observers.event(event)
            if self.hooks.on_event is not None:
                self.hooks.on_event(event)

    async def _snapshot(self, rt: StreamRuntime, frame: VideoFrame) -> None:
        """The event's peak frame as a JPEG, published retained."""
        stream_id, stream = rt.config.stream_id, rt.stream
        if stream is None:
            return
        try:
            jpeg = await stream.snapshot(frame)
        except Exception as exc:  # a snapshot is a nicety: never let it take the pipeline down
            log.warning("stream '%s': snapshot failed: %s", stream_id, exc)
            return
        if jpeg is not None:
            self.observers.snapshot(stream_id, jpeg)
            if self.config.mqtt.snapshots:
                self._queue(self.topics.snapshot(stream_id), jpeg, "state")

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # -- publishing ---------------------------------------------------------------------------------------

    def _queue(self, topic: str, payload: bytes, kind: Any, *, qos: int = 1, retain: bool = True) -> None:
        if self.publisher is None:
            return
        self.outbox.put(Message(topic, payload, qos, retain, kind, time.time()))

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.mqtt.stats_interval)
            self._publish_stats()

    def _publish_stats(self) -> None:
        drops = {
            sid: {
                "dropped_frames": rt.stream.dropped_video if rt.stream is not None else 0,
                "dropped_timesteps": rt.lane.dropped,
            }
            for sid, rt in self.streams.items()
        }
        if self.publisher is not None:
            report = self.stats.report(drops, self.outbox.counters(), self.outbox.event_delivery_ms)
        else:
            report = self.stats.report(drops)
        if self.outbox.overflow:
            log.warning("mqtt: %d event(s) dropped so far: the outbox was full", self.outbox.overflow)
        self._queue(self.topics.stats, _json(report), "state", qos=0, retain=False)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
