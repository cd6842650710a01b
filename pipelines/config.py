"""The analyzer's configuration: a TOML file, command-line flags over it, validated into frozen dataclasses.

A file describes many streams with per-stream options, plus the ``mqtt``, ``model`` and ``device`` sections::

    [defaults]                 # any per-stream key, for every stream
    threshold = 0.6

    [[streams]]
    name = "front"             # the stream id (optional: derived from the source)
    source = "rtsp://user:pass@cam.local/stream"
    alpha = 0.7                # per-stream keys: see STREAM_KEYS
    beta = 0.3
    mask = [[[0, 0], [0.3, 0], [0.3, 1], [0, 1]]]   # polygons the video ignores (normalized, y down)

    [[streams.zones]]          # a part of the picture with events of its own (docs/zones.md)
    name = "door"
    polygon = [[0.6, 0.2], [0.9, 0.2], [0.9, 0.9], [0.6, 0.9]]

    [mqtt]
    url = "mqtt://localhost:1883"
    prefix = "streamer"

    [model]
    max_batch = 64

    [device]
    type = "auto"

    [homeassistant]            # MQTT discovery: a Home Assistant device per stream (pipelines.outputs.homeassistant)
    discovery = true

    [clips]                    # a clip of each event, with its sound (pipelines.outputs.clips)
    dir = "/var/lib/streamer/clips"

    [tags]                     # what an event heard (pipelines.stages.tagging)
    speech = true

    metrics = ":9108"          # Prometheus /metrics (pipelines.outputs.metrics)
    ui = ":8080"               # the live web view (pipelines.outputs.webui), on localhost unless a host is given

Flags override the file (``--alpha`` sets alpha for every stream). Unknown keys and bad values raise
:class:`~streamer.errors.ConfigError` naming the key and what is allowed.

Every setting is declared once, with :func:`streamer.settings.setting`, on the field of the dataclass it feeds
(here, and :class:`~streamer.options.SourceOptions` and :class:`~streamer.sync.SyncOptions` for the capture
side); the key tables below and the validation are derived from them here, every command's flags in
:mod:`pipelines.flags` and ``docs/settings.md`` in :mod:`pipelines.settings_doc`.
"""

from __future__ import annotations

import math
import os
import ssl
import threading
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from pipelines.stages.topics import LEVEL_RE, check_prefix
from streamer.errors import ConfigError, StreamerError
from streamer.options import SourceOptions
from streamer.settings import (
    ANALYZE,
    CLUSTER_ADMIN,
    IN_PROCESS,
    LEARN,
    SECTIONS,
    Check,
    Setting,
    boolean,
    choice,
    default_of,
    fail,
    field_values,
    folder,
    integer,
    labels,
    number,
    optional_path,
    output_file,
    setting,
    settings_of,
    shown_value,
    string,
)
from streamer.spec import SourceSpec, parse_source
from streamer.sync import SyncOptions

if TYPE_CHECKING:
    from models.heads import Checkpoint
    from streamer.ingest import IngestStream

DEFAULT_MQTT_URL = "mqtt://localhost:1883"
MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883}
METRICS_HOST = "127.0.0.1"  # /metrics: this machine only unless a host is given (a scraper elsewhere: 0.0.0.0:PORT)
UI_HOST = "127.0.0.1"  # the web view: this machine only unless a host is given
# Home Assistant binary_sensor device classes an activity may take (per-stream key ``device_class``)
DEVICE_CLASSES = ("motion", "sound", "occupancy", "presence", "moving", "vibration", "problem")
MAX_ZONES = 8  # per stream: each is a detector and a Home Assistant entity
ZONE_KEYS = ("name", "polygon", "threshold", "only", "ignore")

Point = tuple[float, float]
Polygon = tuple[Point, ...]  # at least 3 points (x, y), normalized picture coordinates: 0..1, y down


@dataclass(frozen=True)
class _Regions(Check):
    """``mask`` and ``zones``: taken as the file holds them here; :func:`check_regions` checks them per stream,
    so that an error names the stream (and the zone)."""

    text: str

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return self.text

    def __call__(self, path: str, value: Any) -> Any:
        return value


class _DeviceType(Check):
    allowed = "auto, cpu, cuda or cuda:N"

    def __call__(self, path: str, value: Any) -> str:
        cuda_n = isinstance(value, str) and value.startswith("cuda:") and value[5:].isdigit()
        if value not in ("auto", "cpu", "cuda") and not cuda_n:
            raise fail(path, self.allowed, value)
        return str(value)


class _BrokerUrl(Check):
    """Checked as a string here; :func:`mqtt_config` takes the URL apart."""

    allowed = "mqtt://[USER[:PASS]@]HOST[:PORT], mqtts://... or none"

    def __call__(self, path: str, value: Any) -> str:
        text: str = string(path, value)
        return text


@dataclass(frozen=True)
class _Endpoint(Check):
    """``[HOST]:PORT`` or ``PORT`` (an integer in a config file); no host: ``default_host``."""

    default_host: str
    allowed = "[HOST]:PORT such as :9108 or 0.0.0.0:8080"

    def __call__(self, path: str, value: Any) -> Address:
        return address(path, value, default_host=self.default_host)


@dataclass(frozen=True, kw_only=True)
class EventOptions:
    """When S(t) makes an event (see :mod:`pipelines.stages.events`)."""

    # 0.3 lies between nothing (S ~ 0) and one modality alone (S = 0.5 S_v or 0.5 S_a with the default weights,
    # ~0.45-0.5 for a clear sound or movement), both making ~0.9-1
    threshold: float = setting(0.3, section="stream", check=number(0, 1, lo_open=True), live=True,
                               commands=ANALYZE | {"evaluate"}, help="an event starts when S >= this")  # fmt: skip
    # the pauses within a sentence, a bark series, a person walking through are shorter (so each is one event),
    # two separate sounds' apart longer
    min_gap: float = setting(0.6, section="stream", check=number(0), unit="s", commands=ANALYZE | LEARN, live=True,
                             help="time S must stay below the threshold for an event to end")  # fmt: skip
    # most false events on busy real scenes are one 0.1 s timestep; real ones last 0.3 s or more
    min_duration: float = setting(
        0.2,
        section="stream",
        check=number(0),
        unit="s",
        commands=ANALYZE | LEARN,
        help="shortest event reported (unless clear); its start waits for it",
    )
    # one sense at 0.97 (14 dB, or 3.5% of the picture, over its usual) is surely an event: it starts at once (no
    # latency added to clear events); single 0.1 s peaks of a voice talking on reach 0.93-0.96
    clear: float = setting(0.97, section="stream", check=number(0, 1), commands=ANALYZE | LEARN,
                           help="S_v or S_a at which an event starts at once, before min_duration")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class StreamConfig:
    spec: SourceSpec
    alpha: float = setting(0.5, section="stream", check=number(0), commands=ANALYZE | {"evaluate"}, live=True,
                           help="weight of video activity S_v in S = alpha S_v + beta S_a")  # fmt: skip
    beta: float = setting(0.5, section="stream", check=number(0), commands=ANALYZE | {"evaluate"}, live=True,
                          help="weight of audio activity S_a")  # fmt: skip
    device_class: str | None = setting(
        None, section="stream", check=choice(*DEVICE_CLASSES), shown="sound when beta > alpha, else motion",
        help="Home Assistant's device class for the stream's activity sensor",
    )  # fmt: skip
    mask: tuple[Polygon, ...] = setting(
        (), section="stream", check=_Regions("polygons [[[x, y], [x, y], [x, y], ...], ...], x and y from 0 to 1"),
        shown="none", help="parts of the picture the video activity ignores (docs/zones.md)",
    )  # fmt: skip
    zones: tuple[Zone, ...] = setting(
        (), section="stream", check=_Regions(f"[[streams.zones]] tables: name, polygon, threshold (at most "
                                             f"{MAX_ZONES})"),
        shown="none", help="named parts of the picture, each with events of its own (docs/zones.md)",
    )  # fmt: skip
    zone_threshold: float = setting(0.6, section="stream", check=number(0, 1, lo_open=True), commands=ANALYZE,
                                    live=True,
                                    help="S_v in a zone at which the zone has an event (a zone's own threshold "
                                    "overrides it)")  # fmt: skip
    only: tuple[str, ...] = setting((), section="stream", check=labels, shown="none",
                                    help="tag labels the stream's events are for: an event with none of them is "
                                    "published as filtered (docs/tags.md)")  # fmt: skip
    ignore: tuple[str, ...] = setting((), section="stream", check=labels, shown="none",
                                      help="tag labels that do not count: an event whose tags are all of them is "
                                      "published as filtered, and their sensors stay off")  # fmt: skip
    enabled: bool = setting(True, section="stream", check=boolean, live=True,
                            help="detect events (false: the stream is still decoded and scored, so that turning it "
                            "on again is instant, but it has no events)")  # fmt: skip
    events: EventOptions = field(default_factory=EventOptions)
    source: SourceOptions = field(default_factory=SourceOptions)
    sync: SyncOptions = field(default_factory=SyncOptions)

    @property
    def stream_id(self) -> str:
        return self.spec.stream_id

    def ingest(self, clip_keep: float | None = None) -> IngestStream:
        """What an ingest process needs to capture this stream (``clip_keep``: seconds of packets it keeps for
        event clips; None: no clips)."""
        from streamer.ingest import IngestStream

        return IngestStream(self.spec, self.source, self.sync, clip_keep)

    @property
    def activity_class(self) -> str:
        return self.device_class or ("sound" if self.beta > self.alpha else "motion")


@dataclass(frozen=True)
class Zone:
    """A named part of the picture with events of its own (:mod:`pipelines.stages.zones`, ``docs/zones.md``);
    ``threshold`` None: the stream's ``zone_threshold``; ``only`` and ``ignore``: the tag filters of the zone's
    events, as a stream's (docs/tags.md)."""

    name: str
    polygon: Polygon
    threshold: float | None = None
    only: tuple[str, ...] = default_of(StreamConfig, "only")
    ignore: tuple[str, ...] = default_of(StreamConfig, "ignore")


_MQTTS = "mqtts: "


@dataclass(frozen=True, kw_only=True)
class MqttConfig:
    """``url`` None: no broker (events only go to ``--events-out`` and the terminal)."""

    url: str | None = setting(
        DEFAULT_MQTT_URL, section="mqtt", check=_BrokerUrl(), flag="--mqtt", commands=ANALYZE | CLUSTER_ADMIN,
        metavar="URL", help="the broker, mqtt://[USER[:PASS]@]HOST[:PORT] or mqtts://...; none: no broker "
        "(credentials also from STREAMER_MQTT_USERNAME and STREAMER_MQTT_PASSWORD)",
    )  # fmt: skip
    prefix: str = setting("streamer", section="mqtt", check=string, commands=ANALYZE | CLUSTER_ADMIN,
                          help="the topic prefix: levels of letters, digits, _ and - separated by /")  # fmt: skip
    username: str | None = setting(None, section="mqtt", check=string, repr=False, help="broker user name")
    password: str | None = setting(None, section="mqtt", check=string, repr=False, help="broker password")
    password_file: str | None = setting(None, section="mqtt", check=optional_path, repr=False,
                                        help="read the password from this file (when none is given)")  # fmt: skip
    client_id: str | None = setting(None, section="mqtt", check=string, shown="chosen by the client",
                                    help="MQTT client id")  # fmt: skip
    keepalive: int = setting(30, section="mqtt", check=integer(5, 3600), unit="s", help="MQTT keepalive")
    stats_interval: float = setting(10.0, section="mqtt", check=number(0.1), unit="s", commands=ANALYZE,
                                    help="time between {prefix}/stats messages")  # fmt: skip
    outbox_size: int = setting(10000, section="mqtt", check=integer(1, 10_000_000),
                               help="messages kept while the broker is away; beyond that the oldest are "
                               "dropped")  # fmt: skip
    control: bool = setting(False, section="mqtt", check=boolean, flag="--control", commands=ANALYZE,
                            help="take live settings on {prefix}/{stream}/set (threshold, enabled, alpha, beta, "
                            "zones: docs/control.md)")  # fmt: skip
    control_file: Path | None = setting(  # noqa: RUF009
        None, section="mqtt", check=output_file, commands=ANALYZE, metavar="FILE.json",
        shown="CONFIG.control.json next to the config file, else streamer-control.json here",
        help="where live settings are kept across restarts",
    )  # fmt: skip
    scores: bool = setting(False, section="mqtt", check=boolean, commands=ANALYZE,
                           help="publish every timestep's scores on {prefix}/{stream}/scores (QoS 0)")  # fmt: skip
    snapshots: bool = setting(
        True,
        section="mqtt",
        check=boolean,
        help="publish a JPEG of each event's peak frame on {prefix}/{stream}/snapshot",
    )
    ca_file: str | None = setting(None, section="mqtt", check=optional_path, shown="the system's",
                                  help=_MQTTS + "CA bundle to verify the broker with")  # fmt: skip
    cert_file: str | None = setting(None, section="mqtt", check=optional_path, help=_MQTTS + "client certificate")
    key_file: str | None = setting(None, section="mqtt", check=optional_path, help=_MQTTS + "its private key")
    tls_insecure: bool = setting(False, section="mqtt", check=boolean,
                                 help=_MQTTS + "skip the broker's hostname verification")  # fmt: skip

    @property
    def host(self) -> str:
        return urlsplit(self.url or DEFAULT_MQTT_URL).hostname or "localhost"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url or DEFAULT_MQTT_URL)
        return parts.port or MQTT_SCHEMES.get(parts.scheme, MQTT_SCHEMES["mqtt"])

    @property
    def tls(self) -> bool:
        return urlsplit(self.url or "").scheme == "mqtts"

    @property
    def display_url(self) -> str:
        """The URL without credentials, for messages."""
        if self.url is None:
            return "none"
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{self.host}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The model and where it runs. ``luma_size``, ``sample_rate`` and ``context_ms`` are ``[model]`` settings
    whose home is the capture side (:class:`SourceOptions`, :class:`SyncOptions`): the model takes their values."""

    device: str = setting("auto", section="device", key="type", check=_DeviceType(), flag="--device",
                          commands=ANALYZE | LEARN, help="where the model runs: auto (CUDA when there is a GPU), "
                          "cpu, cuda or cuda:N")  # fmt: skip
    autocast: bool = setting(False, section="device", check=boolean,
                             help="run the model in reduced precision on CUDA")  # fmt: skip
    max_batch: int = setting(64, section="model", check=integer(1, 65536), commands=ANALYZE,
                             help="timesteps per model call, across streams")  # fmt: skip
    max_wait_ms: float = setting(5.0, section="model", check=number(0, 10000), unit="ms", commands=ANALYZE,
                                 help="how long the batcher waits for more timesteps once it has one")  # fmt: skip
    tau: float = setting(10.0, section="model", check=number(0.1), unit="s",
                         help="memory of the adaptive baselines (video: the last 2 tau, audio: 0.8 tau)")  # fmt: skip
    threads: int = setting(1, section="model", check=integer(1, 256), help="torch CPU threads for the model: "
                           "the capture threads need the cores for decoding")  # fmt: skip
    video: str | None = setting(None, section="model", check=string, metavar="package.module:Class",
                                help="a custom S_v encoder (package.module:Class)")  # fmt: skip
    video_weights: str | None = setting(None, section="model", check=optional_path,
                                        help="the custom S_v encoder's local state_dict")  # fmt: skip
    audio: str | None = setting(None, section="model", check=string, help="a custom S_a encoder")
    audio_weights: str | None = setting(None, section="model", check=optional_path,
                                        help="the custom S_a encoder's local state_dict")  # fmt: skip
    checkpoint: str | None = setting(None, section="model", check=optional_path, flag="--model",
                                     commands=ANALYZE | {"evaluate"}, metavar="FILE",
                                     help="a fusion model made by `streamer train`")  # fmt: skip
    luma_size: tuple[int, int] = default_of(SourceOptions, "luma_size")
    sample_rate: int = default_of(SyncOptions, "sample_rate")
    context_ms: float = default_of(SyncOptions, "context", as_configured=True)


@dataclass(frozen=True, kw_only=True)
class HomeAssistantConfig:
    """MQTT discovery (:mod:`pipelines.outputs.homeassistant`)."""

    discovery: bool = setting(False, section="homeassistant", check=boolean, flag="--homeassistant",
                              commands=ANALYZE, help="announce each stream to Home Assistant (MQTT "
                              "discovery)")  # fmt: skip
    prefix: str = setting("homeassistant", section="homeassistant", check=string,
                          help="Home Assistant's discovery prefix (its MQTT integration's setting)")  # fmt: skip
    interval: float = setting(1.0, section="homeassistant", check=number(0.1), unit="s",
                              help="time between the S, S_v and S_a sensor states (each the highest since the "
                              "last)")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class TagsConfig:
    """What an event heard, named after its start (:mod:`pipelines.stages.tagging`)."""

    speech: bool = setting(True, section="tags", check=boolean, flag="--speech-tags", commands=ANALYZE,
                           help="tag events whose sound is speech (silero-vad, shipped with streamer)")  # fmt: skip
    min_confidence: float = setting(0.5, section="tags", check=number(0, 1), commands=ANALYZE,
                                    help="a tag is given at this confidence or more")  # fmt: skip
    budget: float = setting(0.05, section="tags", check=number(0.001, 64), unit="cores", commands=ANALYZE,
                            help="CPU the tagging may take on average (a share of one core): past it, events wait "
                            "for their tags and, after 30 s, go without")  # fmt: skip
    top: int = setting(3, section="tags", check=integer(1, 20), commands=ANALYZE,
                       help="the most labels a model gives an event")  # fmt: skip
    audio_model: str | None = setting(None, section="tags", check=optional_path, commands=ANALYZE, metavar="FILE.onnx",
                                      help="an ONNX audio tagger (YAMNet, PANNs, CED exports: docs/tags.md) naming "
                                      "events' sounds")  # fmt: skip
    audio_labels: str | None = setting(None, section="tags", check=optional_path, commands=ANALYZE,
                                       help="the audio tagger's labels: one a line, or a CSV with "
                                       "display_name")  # fmt: skip
    audio_rate: int | None = setting(None, section="tags", check=integer(8000, 192000), unit="Hz", commands=ANALYZE,
                                     shown="the analysis's sample_rate",
                                     help="the sample rate the audio tagger takes (PANNs: 32000)")  # fmt: skip
    detector_model: str | None = setting(None, section="tags", check=optional_path, commands=ANALYZE,
                                         metavar="FILE.onnx",
                                         help="an ONNX object detector (a YOLO-family export: docs/tags.md) naming "
                                         "what events' best frames show")  # fmt: skip
    detector_labels: str | None = setting(None, section="tags", check=optional_path, commands=ANALYZE,
                                          help="the detector's labels, one a line")  # fmt: skip
    sensors: tuple[str, ...] = setting((), section="tags", check=labels, commands=ANALYZE, shown="none",
                                       help="labels that get a Home Assistant binary sensor per stream, besides "
                                       "speech (such as [\"person\", \"dog\"])")  # fmt: skip

    def __post_init__(self) -> None:
        for model, names in (("audio_model", "audio_labels"), ("detector_model", "detector_labels")):
            if (getattr(self, model) is None) != (getattr(self, names) is None):
                raise ConfigError(f"tags.{model} and tags.{names}: give both or neither")

    @property
    def on(self) -> bool:
        return self.speech or self.audio_model is not None or self.detector_model is not None

    @property
    def announced(self) -> tuple[str, ...]:
        """The labels with a Home Assistant binary sensor per stream."""
        return tuple(dict.fromkeys((("speech",) if self.speech else ()) + self.sensors))


CLIP_MARGIN = 2.0  # seconds a stream keeps beyond the pre-roll (the analysis runs a little behind the capture)


@dataclass(frozen=True, kw_only=True)
class ClipsConfig:
    """Event clips (:mod:`streamer.clips`, :mod:`pipelines.outputs.clips`)."""

    folder: Path | None = setting(  # noqa: RUF009 - setting() is dataclasses.field()
        None, section="clips", key="dir", check=folder, flag="--clips", commands=ANALYZE, metavar="DIR",
        help="write a clip of each event into this folder: the stream's own video and audio (not re-encoded) from "
        "pre_roll before the event to post_roll after it; none: no clips",
    )  # fmt: skip
    pre_roll: float = setting(5.0, section="clips", flag="--clip-pre-roll", check=number(0, 60), unit="s",
                              commands=ANALYZE,
                              help="a clip starts this long before its event (at the key frame before)")  # fmt: skip
    post_roll: float = setting(5.0, section="clips", flag="--clip-post-roll", check=number(0, 60), unit="s",
                               commands=ANALYZE, help="a clip ends this long after its event")  # fmt: skip
    max_size: float = setting(10_000.0, section="clips", flag="--clips-max-size", check=number(1), unit="MB",
                              commands=ANALYZE,
                              help="the folder's clips together at most this big: the oldest go first")  # fmt: skip
    max_age: float = setting(7.0, section="clips", flag="--clips-max-age", check=number(0, lo_open=True),
                             unit="days", commands=ANALYZE, help="clips older than this are deleted")  # fmt: skip

    def keep(self, live: bool, hop: float) -> float | None:
        """Seconds of packets a stream keeps for clips (None: clips are off): the pre-roll and what the analysis
        may run behind the capture (a file's ingest reads up to FILE_INBOX timesteps ahead)."""
        from streamer.ingest import FILE_INBOX

        if self.folder is None:
            return None
        return self.pre_roll + CLIP_MARGIN + (0.0 if live else FILE_INBOX * hop)


@dataclass(frozen=True)
class Address:
    """Where a web endpoint listens: ``[HOST]:PORT``."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def address(path: str, value: Any, *, default_host: str) -> Address:
    """``[HOST]:PORT`` or ``PORT``; no host: ``default_host``."""
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535 or any(c.isspace() or c == "/" for c in host):
        raise fail(path, "[HOST]:PORT such as :9108 or 0.0.0.0:8080", value)
    return Address(host, int(port))


@dataclass(frozen=True, kw_only=True)
class AnalyzerConfig:
    streams: tuple[StreamConfig, ...]
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    duration: float | None = setting(None, section="top", check=number(0, lo_open=True), unit="s", file=False,
                                     commands=IN_PROCESS,
                                     help="stop each stream after this much media time")  # fmt: skip
    events_out: Path | None = setting(  # noqa: RUF009 - setting() is dataclasses.field()
        None, section="top", check=output_file, file=False, commands=IN_PROCESS, metavar="FILE.jsonl",
        help="also append events to this file",
    )  # fmt: skip
    ingest: str = setting(
        "process", section="top", check=choice("process", "thread"),
        help="process: live streams captured in processes of their own (sharing them past 2 a core), files in "
        "one per core; thread: capture threads in the analyzer's process (one interpreter lock for all)",
    )  # fmt: skip
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    clips: ClipsConfig = field(default_factory=ClipsConfig)
    tags: TagsConfig = field(default_factory=TagsConfig)
    metrics: Address | None = setting(  # noqa: RUF009
        None, section="top", check=_Endpoint(METRICS_HOST), commands=IN_PROCESS, metavar="[HOST]:PORT",
        help="serve Prometheus /metrics here, e.g. :9108 (no host: localhost only; 0.0.0.0:9108 for a scraper "
        "elsewhere)",
    )  # fmt: skip
    ui: Address | None = setting(  # noqa: RUF009
        None, section="top", check=_Endpoint(UI_HOST), commands=IN_PROCESS, metavar="[HOST]:PORT",
        help="serve the live web view here, e.g. :8080 (no host: localhost only)",
    )  # fmt: skip
    web_config: str | None = setting(
        None, section="top", check=optional_path, commands=IN_PROCESS, metavar="FILE.yml",
        help="TLS and HTTP basic authentication for metrics and ui: a web configuration file in Prometheus's "
        "format (tls_server_config: cert_file, key_file; basic_auth_users: name: bcrypt hash); docs/integrations.md",
    )  # fmt: skip

    def ingest_stream(self, sc: StreamConfig) -> IngestStream:
        """What an ingest process needs to capture stream ``sc``, clips included."""
        return sc.ingest(self.clips.keep(sc.spec.is_live, sc.sync.hop))


# -- the schema: every setting, by the config file's section ---------------------------------------------------

SCHEMA: tuple[type, ...] = (StreamConfig, EventOptions, SyncOptions, SourceOptions, ModelConfig, MqttConfig,
                            HomeAssistantConfig, ClipsConfig, TagsConfig, AnalyzerConfig)  # fmt: skip
SETTINGS: tuple[Setting, ...] = tuple(s for cls in SCHEMA for s in settings_of(cls))


def section_settings(section: str, *, file_only: bool = True) -> dict[str, Setting]:
    """The settings of one section by key; ``file_only``: those a config file may hold."""
    return {s.key: s for s in SETTINGS if s.section == section and (s.file or not file_only)}


STREAM_KEYS: dict[str, Check] = {k: s.check for k, s in section_settings("stream").items()}
STREAM_ENTRY_KEYS: dict[str, Check] = {"name": string, "source": string, **STREAM_KEYS}
MQTT_KEYS: dict[str, Check] = {k: s.check for k, s in section_settings("mqtt").items()}
TOP_KEYS = ("defaults", "streams", "mqtt", "model", "device", "homeassistant", "clips", "tags",
            *section_settings("top"))  # fmt: skip

Values = dict[str, dict[str, Any]]  # section -> key -> checked value (in the config file's units)


def take(table: Mapping[str, Any], where: str, schema: Mapping[str, Check]) -> dict[str, Any]:
    """Validate every key of ``table`` against ``schema``; unknown keys are refused."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a table, got {table!r}")
    values: dict[str, Any] = {}
    for key, raw in table.items():
        path = f"{where}.{key}" if where else key
        if key not in schema:
            raise ConfigError(f"unknown key {path!r} (allowed: {', '.join(schema)})")
        values[key] = schema[key](path, raw)
    return values


def take_flags(section: str, flags: Mapping[str, Any]) -> dict[str, Any]:
    """Flag values of one section (by config key), each checked as the config file's and named by its flag."""
    known = section_settings(section, file_only=False)
    values: dict[str, Any] = {}
    for key, raw in flags.items():
        if key not in known:
            raise ConfigError(f"unknown setting {key!r} (allowed: {', '.join(known)})")
        values[key] = known[key].check(known[key].option or key, raw)
    return values


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config {str(path)!r}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"config {str(path)!r}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {str(path)!r}: not valid TOML: {exc}") from None


# -- from a file and flags to the dataclasses ----------------------------------------------------------------


@dataclass(frozen=True)
class Layers:
    """A config file's settings and the flags over them, checked: ``defaults`` and ``flags`` are per-stream
    (``[defaults]`` and the per-stream flags, each stream's own table goes between), ``sections`` the rest
    (file, then flags) by section; ``model`` is built from them."""

    defaults: dict[str, Any]
    flags: dict[str, Any]
    sections: Values
    model: ModelConfig


def layers(doc: Mapping[str, Any], flags: Mapping[str, Mapping[str, Any]]) -> Layers:
    """Check a parsed config file (``{}`` for none) and flags by section (``{"stream": {"alpha": 0.7}, ...}``)."""
    unknown = set(doc) - set(TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(TOP_KEYS)})")
    odd = set(flags) - set(SECTIONS)
    if odd:
        raise ConfigError(f"unknown section {sorted(odd)[0]!r} (allowed: {', '.join(SECTIONS)})")
    sections: Values = {}
    for section in SECTIONS:
        if section == "stream":
            continue
        schema = {k: s.check for k, s in section_settings(section).items()}
        if section == "top":
            from_file = take({k: v for k, v in doc.items() if k in schema}, "", schema)
        else:
            from_file = take(doc.get(section, {}), section, schema)
        sections[section] = from_file | take_flags(section, flags.get(section, {}))
    model = ModelConfig(**field_values(ModelConfig, sections), **_format_values(sections["model"]))
    defaults = take(doc.get("defaults", {}), "defaults", STREAM_KEYS)
    return Layers(defaults, take_flags("stream", flags.get("stream", {})), sections, model)


def _format_values(model_section: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[model]`` settings whose home is the capture side, as the model holds them (under their key)."""
    return {k: v for k, v in model_section.items() if section_settings("model")[k].owner != "ModelConfig"}


def configure(
    doc: Mapping[str, Any] | None,
    *,
    sources: Sequence[str] = (),
    flags: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> AnalyzerConfig:
    """The configuration from a parsed TOML document (or None) and ``[NAME=]URI`` sources, with flags by
    section over the file (see :func:`pipelines.flags.flag_values`); raises ConfigError."""
    try:
        return _configure(dict(doc or {}), list(sources), flags or {}, environ)
    except ConfigError:
        raise
    except StreamerError as exc:  # a malformed source string
        raise ConfigError(str(exc)) from None


def build_config(
    file: Mapping[str, Any] | None = None,
    *,
    sources: Sequence[str] = (),
    stream_flags: Mapping[str, Any] | None = None,
    mqtt_flags: Mapping[str, Any] | None = None,
    model_flags: Mapping[str, Any] | None = None,
    device: str | None = None,
    environ: Mapping[str, str] = os.environ,
    extra_flags: Mapping[str, Any] | None = None,
) -> AnalyzerConfig:
    """:func:`configure` with the flags given by kind (``extra_flags``: ``metrics``, ``ui`` and ``discovery``)."""
    extra = dict(extra_flags or {})
    top = {"metrics": extra.get("metrics"), "ui": extra.get("ui")}
    flags: Values = {
        "stream": dict(stream_flags or {}),
        "mqtt": dict(mqtt_flags or {}),
        "model": dict(model_flags or {}),
        "device": {} if device is None else {"type": device},
        "homeassistant": _given({"discovery": extra.get("discovery")}),
        "top": _given(top),
    }
    return configure(file, sources=sources, flags=flags, environ=environ)


def _given(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _configure(
    doc: dict[str, Any], sources: list[str], flags: Mapping[str, Mapping[str, Any]], environ: Mapping[str, str]
) -> AnalyzerConfig:
    given = layers(doc, flags)
    entries = doc.get("streams", [])
    if not isinstance(entries, list):
        raise ConfigError(f"streams: expected an array of tables ([[streams]]), got {entries!r}")
    raw_streams: list[tuple[str, dict[str, Any]]] = []
    for i, entry in enumerate(entries):
        values = take(entry, f"streams[{i}]", STREAM_ENTRY_KEYS)
        if "source" not in values:
            raise ConfigError(f"streams[{i}]: missing key 'source'")
        source = values.pop("source")
        name = values.pop("name", None)
        raw_streams.append((f"{name}={source}" if name else source, values))
    raw_streams += [(text, {}) for text in sources]
    if not raw_streams:
        raise ConfigError("no streams: give a SOURCE or a config file with [[streams]]")

    model = given.model
    learned = checkpoint_defaults(load_model(model.checkpoint)) if model.checkpoint is not None else {}
    streams: list[StreamConfig] = []
    seen: set[str] = set()
    for text, own in raw_streams:
        spec = parse_source(text)
        if spec.stream_id in seen:
            raise ConfigError(f"stream '{spec.stream_id}' is given twice: name one of them (NAME=URI)")
        seen.add(spec.stream_id)
        values = merged_stream_values(model, learned, given.defaults, own, given.flags,
                                      where=f"stream '{spec.stream_id}'")  # fmt: skip
        streams.append(stream_config(spec, values, model))

    sections = given.sections
    mqtt = mqtt_config(sections["mqtt"], environ)
    homeassistant = HomeAssistantConfig(**field_values(HomeAssistantConfig, sections))
    check_prefix(homeassistant.prefix)
    if mqtt.control and mqtt.url is None:
        raise ConfigError("mqtt.control: needs a broker (mqtt.url is none)")
    if homeassistant.discovery and mqtt.url is None:
        raise ConfigError("homeassistant.discovery: needs a broker (mqtt.url is none)")
    top = field_values(AnalyzerConfig, sections)
    m, u = top.get("metrics"), top.get("ui")
    if m is not None and u is not None and m.port == u.port and m.port != 0:
        raise ConfigError(f"metrics and ui: both on port {m.port}; give them different ports")
    if top.get("web_config") is not None:
        from pipelines.outputs.access import load_web_config

        load_web_config(Path(top["web_config"]))  # refused now, in one line, rather than when serving
    clips = ClipsConfig(**field_values(ClipsConfig, sections))
    tags = TagsConfig(**field_values(TagsConfig, sections))
    return AnalyzerConfig(streams=tuple(streams), mqtt=mqtt, model=model, homeassistant=homeassistant, clips=clips,
                          tags=tags, **top)  # fmt: skip


def analysis_settings(
    doc: Mapping[str, Any], flags: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any], ModelConfig]:
    """From a parsed config file and flags by section: the ``[defaults]`` per-stream values, the per-stream
    flags (both checked), and the model configuration (``[model]``, ``[device]`` and their flags)."""
    given = layers(doc, flags)
    return given.defaults, given.flags, given.model


def merged_stream_values(
    model: ModelConfig, learned: Mapping[str, Any], *layers: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """``learned`` (what ``--model`` brings, :func:`checkpoint_defaults`) with each layer over the previous one.
    alpha and beta are refused when a learned head, not the weighted sum, computes S."""
    values = dict(learned)
    for layer in layers:
        values |= layer
    if model.checkpoint is not None and "alpha" not in learned and {"alpha", "beta"} & set(values):
        raise ConfigError(
            f"{where}: alpha and beta do not apply with the learned fusion model {model.checkpoint}: it computes S"
        )
    return values


_models: dict[tuple[str, int, int], Checkpoint] = {}
_models_lock = threading.Lock()


def load_model(path: str) -> Checkpoint:
    """A model made by ``streamer train``, read once per process while the file stays the same (the config
    and the inference stage ask for it both); a file that is not one is a ConfigError naming it."""
    from models.heads import load_checkpoint  # torch: only when a model is given

    try:
        stat = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"model {path!r}: {exc.strerror or exc}") from None
    key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size)
    with _models_lock:
        if key not in _models:
            try:
                _models[key] = load_checkpoint(Path(path))
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return _models[key]


def checkpoint_defaults(checkpoint: Checkpoint) -> dict[str, Any]:
    """The per-stream settings a trained model brings: its threshold, and alpha and beta for a weighted head."""
    values: dict[str, Any] = {"threshold": min(max(checkpoint.threshold, 1e-6), 1.0)}
    if checkpoint.weights is not None:
        values["alpha"], values["beta"] = checkpoint.weights
    return values


def model_values(model: ModelConfig) -> dict[str, Any]:
    """The ``[model]`` section's values as ``model`` holds them (the capture side reads the analysis format)."""
    return {key: getattr(model, key) for key in section_settings("model")}


def stream_config(
    spec: SourceSpec, values: Mapping[str, Any], model: ModelConfig, *, where: str | None = None
) -> StreamConfig:
    """One stream's settings from checked per-stream values (STREAM_KEYS; absent: the defaults) and the model's;
    ``where`` names them in errors (default: the stream)."""
    where = where or f"stream '{spec.stream_id}'"
    values = {**values, **check_regions(values, where)}
    sections = {"stream": values, "model": model_values(model)}
    try:
        sync = SyncOptions(**field_values(SyncOptions, sections))
        source = SourceOptions(**field_values(SourceOptions, sections), sample_rate=sync.sample_rate,
                               segment_align=sync.hop)  # fmt: skip
        config = StreamConfig(spec=spec, events=EventOptions(**field_values(EventOptions, sections)), source=source,
                              sync=sync, **field_values(StreamConfig, sections))  # fmt: skip
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if config.alpha + config.beta <= 0:
        raise ConfigError(f"{where}: alpha and beta: at least one must be > 0 (with both 0, S is always 0)")
    return config


def check_regions(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A stream's ``mask`` and ``zones`` as the file holds them (lists of points, zone tables) -> polygons and
    :class:`Zone`; anything else is one ConfigError naming the stream (``where``) and the zone."""
    out: dict[str, Any] = {}
    if "mask" in values:
        mask = values["mask"]
        if not _is_list(mask):
            raise ConfigError(f"{where}: mask: expected a list of polygons [[[x, y], [x, y], [x, y], ...], ...], "
                              f"got {mask!r}")  # fmt: skip
        out["mask"] = tuple(_polygon(f"{where}: mask[{i}]", p) for i, p in enumerate(mask))
    if "zones" in values:
        zones = values["zones"]
        if not _is_list(zones) or not all(isinstance(z, Mapping | Zone) for z in zones):
            raise ConfigError(f"{where}: zones: expected [[streams.zones]] tables (name, polygon, threshold), "
                              f"got {zones!r}")  # fmt: skip
        if len(zones) > MAX_ZONES:
            raise ConfigError(f"{where}: zones: at most {MAX_ZONES} zones a stream, got {len(zones)}")
        taken: list[Zone] = []
        for i, table in enumerate(zones):
            zone = table if isinstance(table, Zone) else _zone(where, i, table)
            if any(z.name == zone.name for z in taken):
                raise ConfigError(f"{where}: zone '{zone.name}': the name is given twice (zone names are unique in "
                                  "a stream)")  # fmt: skip
            taken.append(zone)
        out["zones"] = tuple(taken)
    return out


def _zone(stream: str, i: int, table: Mapping[str, Any]) -> Zone:
    """Zone ``i`` of a stream (``stream`` names it) from its table."""
    name = table.get("name")
    if name is None:
        raise ConfigError(f"{stream}: zones[{i}]: missing key 'name'")
    if not isinstance(name, str) or not LEVEL_RE.match(name):
        raise ConfigError(f"{stream}: zones[{i}]: name {name!r}: use 1-64 letters, digits, '_' or '-' (one MQTT "
                          "topic level)")  # fmt: skip
    where = f"{stream}: zone '{name}'"
    unknown = [k for k in table if k not in ZONE_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(ZONE_KEYS)})")
    if "polygon" not in table:
        raise ConfigError(f"{where}: missing key 'polygon'")
    polygon = _polygon(f"{where}: polygon", table["polygon"])
    threshold = table.get("threshold")
    if threshold is not None:
        threshold = number(0, 1, lo_open=True)(f"{where}: threshold", threshold)
    only, ignore = (labels(f"{where}: {key}", table.get(key, ())) for key in ("only", "ignore"))
    return Zone(name, polygon, threshold, only, ignore)


def _polygon(where: str, value: Any) -> Polygon:
    """At least 3 points [x, y], each coordinate a number from 0 to 1."""
    if not _is_list(value) or len(value) < 3:
        raise ConfigError(f"{where}: expected a polygon of at least 3 points [[x, y], [x, y], [x, y], ...], "
                          f"got {shown_value(value)}")  # fmt: skip
    points: list[Point] = []
    for point in value:
        if not _is_list(point) or len(point) != 2 or not all(_is_number(c) for c in point):
            raise ConfigError(f"{where}: expected points [x, y] of two numbers, got {point!r}")
        x, y = float(point[0]), float(point[1])
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise ConfigError(f"{where}: point {list(point)!r} is outside the picture: x and y go from 0 to 1 "
                              "(a share of its width and height, y down)")  # fmt: skip
        points.append((x, y))
    return tuple(points)


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


CONTROL_FILE = "streamer-control.json"  # live settings kept here when no config file says where


def control_file(mqtt: MqttConfig, config_file: Path | None = None) -> Path:
    """Where live settings are kept (:mod:`pipelines.stages.control`): ``[mqtt] control_file``, else
    ``CONFIG.control.json`` next to the config file the run was given, else CONTROL_FILE in the working folder."""
    if mqtt.control_file is not None:
        return mqtt.control_file
    return config_file.with_suffix(".control.json") if config_file is not None else Path(CONTROL_FILE)


def mqtt_config(values: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> MqttConfig:
    """The broker settings from checked ``[mqtt]`` values (MQTT_KEYS; absent: the defaults). Credentials come
    from, in order: the URL, ``username``/``password`` keys, ``password_file``, and the environment
    (``STREAMER_MQTT_USERNAME``, ``STREAMER_MQTT_PASSWORD``). They are never printed."""
    c = MqttConfig(**field_values(MqttConfig, {"mqtt": values}))
    if c.url in ("none", "off", "") or c.url is None:
        return replace(c, url=None, username=None, password=None, password_file=None)
    parts = urlsplit(c.url)
    if parts.scheme not in MQTT_SCHEMES or not parts.hostname:
        raise ConfigError("mqtt.url: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (or none)")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError("mqtt.url: the port must be a number from 1 to 65535") from None
    check_prefix(c.prefix)
    username = unquote(parts.username) if parts.username else c.username
    password = unquote(parts.password) if parts.password else c.password
    if password is None and c.password_file is not None:
        try:
            password = Path(c.password_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"mqtt.password_file: cannot read {c.password_file!r}: {reason_of(exc)}") from None
    username = username or environ.get("STREAMER_MQTT_USERNAME") or None
    password = password or environ.get("STREAMER_MQTT_PASSWORD") or None
    bare = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"  # credentials live apart, never in the URL
    check_tls_files(c.ca_file, c.cert_file, c.key_file)
    return replace(c, url=bare, username=username, password=password)


def mqtt_settings(
    file: Path | None, flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] = os.environ
) -> MqttConfig:
    """The broker settings of a config file's ``[mqtt]`` table (None: no file) with flags by key over them:
    what ``streamer cluster status`` and ``stop`` need to find a site as ``cluster run`` does."""
    doc = load_toml(file) if file is not None else {}
    return mqtt_config(take(doc.get("mqtt", {}), "mqtt", MQTT_KEYS) | take_flags("mqtt", flags or {}), environ)


def check_tls_files(ca_file: str | None, cert_file: str | None, key_file: str | None) -> None:
    """Load the CA bundle and the client certificate and key as the MQTT client will, at start-up: a malformed
    file is one line naming the setting, not a traceback once the connection is tried."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(f"mqtt.ca_file: not a PEM CA certificate file: {ca_file!r}: {reason_of(exc)}") from None
    if cert_file is not None:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            setting = "mqtt.cert_file / mqtt.key_file" if key_file else "mqtt.cert_file"
            raise ConfigError(f"{setting}: not a PEM certificate with its private key: {reason_of(exc)}") from None
    elif key_file is not None:
        raise ConfigError("mqtt.key_file: given without mqtt.cert_file")


def reason_of(exc: BaseException) -> str:
    """An exception's cause in one line (an OS error's words, an SSL error's reason)."""
    text = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())
