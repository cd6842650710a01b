"""``streamer run``: the analyzer assembles the stages a stream's timesteps go through, runs them and stops them.

All stages are asyncio tasks in one ``TaskGroup`` (named ``source-ID``, ``model``, ``mqtt``, ``stats``,
``observers``), in the order a timestep goes through them:

1. a source task per stream (:mod:`pipelines.stages.sources`) reads its timesteps
   (:class:`streamer.stream.Stream`: one capture thread per source, or its ingest process) into its batcher lane
   (bounded: live streams drop their oldest timestep, files wait);
2. the model task (:mod:`pipelines.stages.scoring`) takes batches across streams (:mod:`pipelines.stages.batcher`),
   scores them on the model's worker thread (:mod:`pipelines.stages.inference`) and runs each stream's event
   detector (:mod:`pipelines.stages.events`);
3. what comes out is told (:mod:`pipelines.stages.publishing`): events, scores, snapshots, statuses and stats are
   queued in the outbox (:mod:`pipelines.stages.outbox`), events written to ``--events-out``, and the outputs
   (observers: Home Assistant, metrics, web view) and the terminal's hooks are told;
4. the MQTT task drains the outbox into the broker (:mod:`pipelines.stages.mqtt`); the stats task reports every
   ``stats_interval`` seconds; the observers' task runs their background work.

Each stream's life (starting, running, ended, flushed, released) is one explicit state with its transitions
(:mod:`pipelines.stages.lifecycle`); this module moves streams along it. A failing stream logs one line naming
it and the cause and ends alone; the others go on. :meth:`Analyzer.stop` (SIGINT, SIGTERM) ends the sources (each
one's status ``offline``), lets the model finish what is queued, closes open events, flushes the outbox,
publishes ``offline`` and returns a :class:`RunSummary` whose exit code says what happened
(:mod:`streamer.errors`). Outputs read the analyzer only through its read-only view
(:class:`pipelines.outputs.observers.AnalyzerView`: copies of its counters).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pipelines.config import AnalyzerConfig, StreamConfig, control_file
from pipelines.outputs.clips import ClipKeeper
from pipelines.outputs.observers import Observer, Observers
from pipelines.stages.batcher import Batcher
from pipelines.stages.control import Control
from pipelines.stages.events import EventDetector
from pipelines.stages.inference import ModelRunner
from pipelines.stages.lifecycle import Job, StreamRuntime, StreamState
from pipelines.stages.mqtt import Publisher
from pipelines.stages.outbox import Outbox, OutboxCounts
from pipelines.stages.publishing import Hooks, Publishing
from pipelines.stages.scoring import Scoring
from pipelines.stages.sources import Sources, open_lane, paced
from pipelines.stages.stats import PipelineStats, StreamCounts, percentiles
from pipelines.stages.tagging import PictureTagger, SoundTagger, SpeechTagger, Tagger, Tagging
from pipelines.stages.topics import Topics
from streamer.errors import EXIT_NOT_OPENED, EXIT_OK, EXIT_SOURCE, EXIT_UNDELIVERED, SourceError
from streamer.ingest import IngestHub
from streamer.settings import default_of
from streamer.sync import SyncOptions

if TYPE_CHECKING:
    from pipelines.outputs.metrics import Metrics
    from pipelines.outputs.web import WebServer
    from pipelines.outputs.webui import LiveView

__all__ = ["Analyzer", "Hooks", "RunSummary"]

TAGS_DRAIN_S = 10.0  # at the end of a run, the last events' tags are waited for this long at most

log = logging.getLogger("streamer")


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
        self._background: set[asyncio.Task[None]] = set()  # snapshots and releases, waited for at the end
        # an event's peak frame becomes a JPEG when a broker publishes it or an observer shows it
        snapshots = (config.mqtt.snapshots and self.publisher is not None) or self.observers.wants_snapshots
        self.publishing = Publishing(config, self.topics, self.outbox, self.stats, broker=self.publisher is not None,
                                     observers=self.observers, hooks=self.hooks, snapshots=snapshots,
                                     spawn=self._spawn)  # fmt: skip
        # event clips (--clips): recorded by each stream's capture, told here once written
        self.clips = (
            ClipKeeper(config.clips, self._spawn, self.publishing.clip_written, self.observers.clip_failed)
            if config.clips.folder
            else None
        )
        self.publishing.clips = self.clips
        # tags (what an event heard), after each event's start, on a thread of their own
        self.tagging = self._tagging(config)
        self.publishing.tagging = self.tagging
        if self.clips is not None and self.view is not None:
            self.view.clip_paths = self.clips.paths  # the web view serves the clips this run wrote
        self.web: WebServer | None = None  # the HTTP endpoints (--metrics, --ui), while running
        self.streams: dict[str, StreamRuntime] = {}
        self.scoring = Scoring(self.batcher, self.runner, self.streams, self.stats, self.publishing,
                               after_batch=self._flush_finished)  # fmt: skip
        for sc in config.streams:
            self.runner.add_stream(sc).result()  # nothing is being scored yet: waiting here holds up no batch
            self._register(sc)
        # live control over MQTT (--control): the settings kept by an earlier run are made again now
        self.control: Control | None = None
        if config.mqtt.control and self.publisher is not None:
            configs = lambda: {sid: rt.config for sid, rt in self.streams.items()}  # noqa: E731
            self.control = Control(self.topics, control_file(config.mqtt), configs, self._apply_live,
                                   self.publishing.queue_state)  # fmt: skip
            self.control.load()
            self.publisher.listeners.append(self.control)
        self._tg: asyncio.TaskGroup | None = None  # while run() runs
        self._ended = False  # run() ended: no stream can be added any more
        self._adding: set[str] = set()  # streams being added: their ids are taken
        # the ingest processes (``hub``: its files' started already, so they opened while torch loaded)
        self._hub = hub
        if hub is None and config.ingest == "process":
            self._hub = IngestHub([config.ingest_stream(sc) for sc in config.streams])
        self.sources = Sources(self.batcher, self.stats, self.publishing, self._hub, duration=config.duration,
                               on_lost=self.scoring.end_if_lost, on_ended=self._flush_finished,
                               clips=config.clips)  # fmt: skip

    # -- the read-only view its outputs get (pipelines.outputs.observers.AnalyzerView) ----------------------------

    @property
    def device_name(self) -> str:
        return self.runner.device_name

    @property
    def mqtt_connected(self) -> bool:
        return self.publisher is not None and self.publisher.connected.is_set()

    def drops(self, stream_id: str) -> tuple[int, int]:
        """``(video frames dropped by the capture, timesteps dropped waiting for the model)`` of a stream."""
        rt = self.streams.get(stream_id)
        return (0, 0) if rt is None else rt.drops

    def stream_counts(self) -> Mapping[str, StreamCounts]:
        return MappingProxyType({sid: c.counts(*self.drops(sid)) for sid, c in self.stats.streams.items()})

    def outbox_counts(self) -> OutboxCounts:
        return self.outbox.counts()

    def _observers(self, items: list[Observer], presence: str | None) -> Observers:
        """Home Assistant discovery, the metrics and the web view, as configured, with ``items``."""
        c = self.config
        self.metrics: Metrics | None = None
        self.view: LiveView | None = None
        if c.homeassistant.discovery and self.publisher is not None:
            from pipelines.outputs.homeassistant import HomeAssistant

            ha = HomeAssistant(c.homeassistant, self.topics, self.outbox, registry=presence is None,
                               snapshots=c.mqtt.snapshots, control=c.mqtt.control,
                               tags=c.tags.announced)  # fmt: skip
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
        return Observers(items)

    def _register(self, sc: StreamConfig, state: StreamState = StreamState.READY) -> StreamRuntime:
        weights = (sc.alpha, sc.beta) if self.runner.learned is None else (None, None)
        detector = EventDetector(sc.stream_id, sc.events, *weights)
        rt = self.streams[sc.stream_id] = StreamRuntime(sc, open_lane(self.batcher, sc), detector, state)
        self.stats.stream(sc.stream_id)
        self.observers.stream_added(sc)
        return rt

    def _apply_live(self, stream_id: str, config: StreamConfig) -> None:
        """A stream's live settings changed (:mod:`pipelines.stages.control`): from its next timestep on."""
        rt = self.streams.get(stream_id)
        if rt is None:
            return
        old, rt.config = rt.config, config
        self.observers.settings_changed(config)
        rt.detector.options = config.events
        rt.zones.configure(config)
        if (old.alpha, old.beta) != (config.alpha, config.beta) and self.runner.learned is None:
            rt.detector.alpha, rt.detector.beta = config.alpha, config.beta
            self.runner.set_weights(stream_id, config.alpha, config.beta)
        if old.enabled != config.enabled:
            if not config.enabled:
                self.publishing.events(rt, rt.flush("disabled"))
            self.publishing.enabled(stream_id, config.enabled)

    # -- control ------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """End every source now (SIGINT, SIGTERM); what is queued is still scored and published."""
        if self.sources.stopping:
            return
        log.info("stopping")
        self.batcher.release()
        self.sources.stop(self.streams.values())

    async def add_stream(self, sc: StreamConfig, state: dict[str, Any] | None = None) -> None:
        """Start analyzing another stream, before or while running; ``state``: its checkpoint from elsewhere
        (:meth:`export_states`): its baselines go on instead of warming up again, and an event it had open
        there ends (reason ``source lost``). Its id is taken at once: a second call for it raises
        :class:`ValueError` even while the first is still preparing it."""
        sid = sc.stream_id
        if sid in self.streams or sid in self._adding:
            raise ValueError(f"stream '{sid}' is already analyzed")
        if self._ended:
            raise RuntimeError(f"cannot add stream '{sid}': the analyzer is not running (its run ended)")
        if self.sources.stopping:
            raise RuntimeError("the analyzer is stopping")
        self._adding.add(sid)
        try:
            await self.runner.add_stream(sc)  # on the model thread, between two batches (a new hop's model too)
            rt = self._register(sc, StreamState.STARTING)  # run() must not start its source before it is ready
        finally:
            self._adding.discard(sid)
        try:
            if state is not None:
                try:
                    await self.runner.import_async(sid, state["model"])
                    rt.carried_over = True
                except (ValueError, KeyError) as exc:
                    log.warning("stream '%s': its carried-over model state does not fit (%s); it starts afresh",
                                sid, exc)  # fmt: skip
                if state.get("event") is not None:
                    self.publishing.events(rt, rt.detector.resume(state["event"]))
            if self._hub is not None:
                try:
                    await self._hub.add(self.config.ingest_stream(sc))
                except OSError as exc:  # the process could not be spawned
                    raise SourceError(sid, f"cannot start its ingest process: {exc}") from exc
        except BaseException:
            await self._discard(rt)  # an open lane with no source would keep the batcher, and stop(), waiting
            raise
        rt.advance(StreamState.READY)
        if self._tg is not None:  # else run() starts it
            self.sources.start(self._tg, rt)

    async def _discard(self, rt: StreamRuntime) -> None:
        """A stream whose preparation failed never ran: it leaves at once, lane, counters, capture and slot."""
        self.batcher.close_lane(rt.lane)
        await self._release(rt)  # its remote end too, registered before a spawn failed

    def remove_stream(self, stream_id: str) -> None:
        """Stop analyzing a stream: what it has queued is scored, an open event ends, then its slot is freed."""
        rt = self.streams.get(stream_id)
        if rt is not None and not rt.removed:
            self.sources.remove(rt)

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
        self.publishing.open()
        try:
            if self.metrics is not None or self.view is not None:
                from pipelines.outputs.access import OPEN, load_web_config
                from pipelines.outputs.web import WebServer, start_endpoints  # aiohttp: only when asked for

                self.web = WebServer()
                given = self.config.web_config
                access = OPEN if given is None else load_web_config(Path(given))
                await start_endpoints(self.web, self.metrics, self.view, self.config.metrics, self.config.ui, access)
            if self.clips is not None:
                await asyncio.to_thread(self.clips.retain)
            if self._hub is not None:
                await self._hub.start()  # those not started yet
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                mqtt_task = tg.create_task(self.publisher.run(), name="mqtt") if self.publisher else None
                stats_task = tg.create_task(self.publishing.report_every_interval(self.streams), name="stats")
                observers_task = tg.create_task(self.observers.run(), name="observers")
                tagging_task = tg.create_task(self.tagging.run(), name="tagging") if self.tagging else None
                for rt in self.streams.values():
                    if rt.state is StreamState.READY:  # one being added (STARTING) starts its own once ready
                        self.sources.start(tg, rt)
                await tg.create_task(self.scoring.run(), name="model")
                if self.tagging is not None and tagging_task is not None:
                    await self.tagging.drain(TAGS_DRAIN_S)  # the last events' tags, told before the end
                    tagging_task.cancel()
                stats_task.cancel()
                observers_task.cancel()
                if self.clips is not None:
                    await self.clips.close()  # the captures have ended: the clips finish with what came
                if self._background:
                    await asyncio.wait(self._background, timeout=5)
                self.publishing.report(self.streams)
                undelivered = undelivered_events = 0
                if self.publisher is not None and mqtt_task is not None and not await self.publisher.close(mqtt_task):
                    undelivered, undelivered_events = len(self.outbox), self.outbox.pending_events
                    log.warning(
                        "mqtt: %d message(s), %d of them events, not delivered to %s",
                        undelivered, undelivered_events, self.config.mqtt.display_url,
                    )  # fmt: skip
        finally:
            self._tg, self._ended = None, True  # its task group is closed: a stream added now could not start
            if self.web is not None:
                await self.web.close()
            if self._hub is not None:
                await self._hub.close()
            self.runner.close()
            self.publishing.close()
        failed = tuple(rt.error for rt in self.streams.values() if rt.error is not None)
        return RunSummary(
            events=sum(rt.detector.count for rt in self.streams.values()),
            timesteps=sum(c.timesteps for c in self.stats.streams.values()),
            failed=failed,
            undelivered=undelivered,
            undelivered_events=undelivered_events,
            never_opened=tuple(e for rt in self.streams.values() if (e := rt.never_opened) is not None),
        )

    # -- a stream's life after its source ------------------------------------------------------------------

    def _flush_finished(self) -> None:
        """After each batch and each source's end: a stream whose last timesteps are scored is flushed (an open
        event ends), and a removed one that is flushed is released."""
        for rt in list(self.streams.values()):
            self.scoring.end_if_lost(rt)
            if rt.state is StreamState.ENDED and self.scoring.settled(rt):
                rt.advance(StreamState.FLUSHED)
                self.publishing.events(rt, rt.flush())
                if self.clips is not None:
                    self.clips.stopped(rt)  # its last clip ends with its last packet
                if self.tagging is not None:
                    self.tagging.forget(rt.stream_id)  # its events have ended: its audio goes
            if rt.removed and rt.state is StreamState.FLUSHED:
                rt.advance(StreamState.RELEASING)
                self._spawn(self._release(rt), "release")

    async def _release(self, rt: StreamRuntime) -> None:
        """A removed stream is gone for good once its last snapshots are taken (an ingest process keeps their
        pictures until its connection closes): its capture, slot and figures go."""
        sid = rt.stream_id
        if rt.snapshots:
            await asyncio.wait(rt.snapshots)
        if self._hub is not None:
            await self._hub.remove(sid)
        await self.runner.release(sid)  # on the model thread, after any batch of it still being scored
        rt.advance(StreamState.RELEASED)
        del self.streams[sid]
        self.stats.streams.pop(sid, None)
        self.observers.stream_removed(sid)

    def _tagging(self, config: AnalyzerConfig) -> Tagging | None:
        """The tagging stage with the taggers the settings ask for (a user's models loaded now: a file that is
        not one is refused in one line); None when none is."""
        tags = config.tags
        if not tags.on:
            return None
        device = str(self.runner.device)
        taggers: list[Tagger] = []
        if tags.speech:
            taggers.append(SpeechTagger(tags.min_confidence, device))
        if tags.audio_model is not None and tags.audio_labels is not None:
            from models.onnx_models import OnnxAudioTagger, load_labels

            labels = load_labels(Path(tags.audio_labels), "tags.audio_labels")
            rate = tags.audio_rate or default_of(SyncOptions, "sample_rate")
            model = OnnxAudioTagger(Path(tags.audio_model), labels, rate, device)
            taggers.append(SoundTagger(model, tags.min_confidence, tags.top))
        pictures = False
        if tags.detector_model is not None and tags.detector_labels is not None:
            from models.onnx_models import OnnxDetector, load_labels

            labels = load_labels(Path(tags.detector_labels), "tags.detector_labels")
            taggers.append(PictureTagger(OnnxDetector(Path(tags.detector_model), labels, tags.min_confidence, device),
                                         tags.top))  # fmt: skip
            pictures = True
        live = any(paced(sc, sc.spec.is_live) for sc in config.streams)  # none: files alone, at full speed
        return Tagging(tags, taggers, self.publishing.tagged, pictures=pictures, live=live)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A background task (a snapshot, a release) that the run waits for, a while, before it ends."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task
