"""Prometheus metrics (``--metrics :9108`` serves ``/metrics``), in prometheus-client's registry of their own.

Per stream (label ``stream``: its id, which never holds a credential):

* ``streamer_stream_frames_total`` (decoded video frames in), ``streamer_stream_timesteps_total`` (scored),
  ``streamer_stream_input_fps`` and ``streamer_stream_output_fps`` (over the last ``RATE_WINDOW`` s),
* ``streamer_stream_dropped_frames_total`` (capture queue), ``streamer_stream_dropped_timesteps_total``
  (batcher lane), ``streamer_stream_reconnects_total``, ``streamer_stream_events_total`` (events started),
* ``streamer_stream_status{state=...}`` (1 for the stream's current state, a state set),
* ``streamer_stream_media_seconds`` (media time reached).

The pipeline: ``streamer_stage_latency_seconds{stage}`` histograms (sync, batch, model, publish, total: see
:mod:`pipelines.stages.stats`), ``streamer_batch_size`` histogram, ``streamer_outbox_messages``,
``streamer_outbox_events_pending``, ``streamer_outbox_overflow_total`` (events dropped: outbox full),
``streamer_outbox_scores_dropped_total``, ``streamer_outbox_rejected_total``, ``streamer_mqtt_connected``,
``streamer_model_info{device=...}``, ``streamer_info{version=...}``, and the process's own
(``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ...). Counters are read from the analyzer
when scraped; only the histograms are fed per timestep.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, StateSetMetricFamily
from prometheus_client.registry import Collector

from pipelines.config import StreamConfig
from pipelines.outputs.observers import AnalyzerView, Observer, streamer_version
from pipelines.stages.events import Event, Scores
from pipelines.stages.stats import STAGE_NAMES, Rates, Stamps
from streamer.media import SourceState

RATE_WINDOW = 10.0  # seconds the fps gauges average over
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
STATES = [s.value for s in SourceState]


class Metrics(Observer, Collector):
    def __init__(self, analyzer: AnalyzerView) -> None:
        self.analyzer = analyzer
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        stage = Histogram("streamer_stage_latency_seconds", "Per-timestep latency of each pipeline stage",
                          ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry)  # fmt: skip
        self._stages = [stage.labels(name) for name in STAGE_NAMES]
        self._batch = Histogram("streamer_batch_size", "Timesteps per model call", buckets=BATCH_BUCKETS,
                                registry=self.registry)  # fmt: skip
        self.registry.register(self)
        self.started: dict[str, int] = {}  # events started per stream
        self.reconnects: dict[str, int] = {}
        self.clips: dict[str, tuple[int, int, int]] = {}  # per stream: clips written, their bytes, clips failed
        self._settings: dict[str, tuple[float, bool]] = {}  # per stream: its threshold, detection on
        self._states: dict[str, SourceState] = {}
        self._rates = Rates(RATE_WINDOW)

    # -- fed by the analyzer ----------------------------------------------------------------------------------

    def scored(self, stream_id: str, scores: Scores, stamps: Stamps) -> None:
        for histogram, seconds in zip(self._stages, stamps.latencies(), strict=True):
            histogram.observe(max(0.0, seconds))

    def batch(self, size: int) -> None:
        self._batch.observe(size)

    def event(self, event: Event) -> None:
        if event.type == "start" and event.zone is None:
            self.started[event.stream] = self.started.get(event.stream, 0) + 1

    def state(self, stream_id: str, state: SourceState) -> None:
        """An online source lost (it is retried) counts one reconnect, however many attempts it takes."""
        was = self._states.get(stream_id)
        self._states[stream_id] = state
        if was is SourceState.ONLINE and state in (SourceState.RECONNECTING, SourceState.OFFLINE):
            self.reconnects[stream_id] = self.reconnects.get(stream_id, 0) + 1

    def stream_added(self, stream: StreamConfig) -> None:
        self._settings[stream.stream_id] = (stream.events.threshold, stream.enabled)

    def settings_changed(self, stream: StreamConfig) -> None:
        self.stream_added(stream)

    def clip(self, stream_id: str, clip: dict[str, Any]) -> None:
        written, size, failed = self.clips.get(stream_id, (0, 0, 0))
        self.clips[stream_id] = (written + 1, size + int(clip["bytes"]), failed)

    def clip_failed(self, stream_id: str) -> None:
        written, size, failed = self.clips.get(stream_id, (0, 0, 0))
        self.clips[stream_id] = (written, size, failed + 1)

    def stream_removed(self, stream_id: str) -> None:
        self.started.pop(stream_id, None)
        self.clips.pop(stream_id, None)
        self._settings.pop(stream_id, None)
        self.reconnects.pop(stream_id, None)
        self._states.pop(stream_id, None)

    async def run(self) -> None:
        while True:  # keeps the rate window filled between scrapes
            self._rates.sample(self.analyzer.stream_counts())
            await asyncio.sleep(1.0)

    # -- read when scraped --------------------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def collect(self) -> Iterator[Metric]:
        a = self.analyzer
        label = ["stream"]
        fam: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "frames": CounterMetricFamily("streamer_stream_frames", "Decoded video frames that reached the "
                                          "pipeline", labels=label),
            "timesteps": CounterMetricFamily("streamer_stream_timesteps", "Timesteps scored", labels=label),
            "dropped_frames": CounterMetricFamily("streamer_stream_dropped_frames", "Video frames dropped by the "
                                                  "capture queue", labels=label),
            "dropped_timesteps": CounterMetricFamily("streamer_stream_dropped_timesteps", "Timesteps dropped "
                                                     "waiting for the model", labels=label),
            "reconnects": CounterMetricFamily("streamer_stream_reconnects", "Times the online source was lost "
                                              "(then retried)", labels=label),
            "events": CounterMetricFamily("streamer_stream_events", "Events started", labels=label),
            "fps_in": GaugeMetricFamily("streamer_stream_input_fps", f"Decoded frames per second over the last "
                                        f"{RATE_WINDOW:g} s", labels=label),
            "fps_out": GaugeMetricFamily("streamer_stream_output_fps", f"Timesteps scored per second over the "
                                         f"last {RATE_WINDOW:g} s", labels=label),
            "media": GaugeMetricFamily("streamer_stream_media_seconds", "Media time reached", labels=label),
            "threshold": GaugeMetricFamily("streamer_stream_threshold", "The threshold S must reach for an event "
                                           "(changed live with --control)", labels=label),
            "enabled": GaugeMetricFamily("streamer_stream_enabled", "1 while the stream's detection is on",
                                         labels=label),
            "clips": CounterMetricFamily("streamer_clips", "Event clips written (--clips)", labels=label),
            "clip_bytes": CounterMetricFamily("streamer_clip_bytes", "Bytes of the event clips written",
                                              labels=label),
            "clip_failures": CounterMetricFamily("streamer_clip_failures", "Event clips that could not be "
                                                 "written", labels=label),
        }  # fmt: skip
        status = StateSetMetricFamily("streamer_stream_status", "The stream's state", labels=label)
        counts = a.stream_counts()  # one copy: the rates and the counters of the same moment
        rates = self._rates.sample(counts)
        for sid, c in counts.items():
            fps_in, fps_out = rates.get(sid, (0.0, 0.0))
            values = {
                "frames": c.frames, "timesteps": c.timesteps, "dropped_frames": c.dropped_frames,
                "dropped_timesteps": c.dropped_timesteps,
                "reconnects": self.reconnects.get(sid, 0), "events": self.started.get(sid, 0),
                "fps_in": round(fps_in, 3), "fps_out": round(fps_out, 3), "media": c.media_t,
            }  # fmt: skip
            values["clips"], values["clip_bytes"], values["clip_failures"] = self.clips.get(sid, (0, 0, 0))
            threshold, enabled = self._settings.get(sid, (math.nan, True))
            values["threshold"], values["enabled"] = threshold, int(enabled)
            for key, family in fam.items():
                family.add_metric([sid], values[key])
            status.add_metric([sid], {state: state == c.state for state in STATES})
        yield from fam.values()
        yield status
        outbox = a.outbox_counts()
        yield _gauge("streamer_outbox_messages", "Messages waiting for the broker or in flight", outbox.messages)
        yield _gauge("streamer_outbox_events_pending", "Events not acknowledged by the broker yet",
                     outbox.pending_events)  # fmt: skip
        yield _counter("streamer_outbox_overflow", "Events dropped because the outbox was full", outbox.overflow)
        yield _counter("streamer_outbox_scores_dropped", "Score messages dropped (no broker)", outbox.scores_dropped)
        yield _counter("streamer_outbox_rejected", "Messages given up after repeated failures", outbox.rejected)
        yield _gauge("streamer_mqtt_connected", "1 while connected to the MQTT broker", int(a.mqtt_connected))
        model = GaugeMetricFamily("streamer_model_info", "The model's device", labels=["device"])
        model.add_metric([a.device_name], 1)
        yield model
        info = GaugeMetricFamily("streamer_info", "streamer's version", labels=["version"])
        info.add_metric([streamer_version()], 1)
        yield info


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, text, value=value)
