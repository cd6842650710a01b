"""The analyzer's configuration: a TOML file, command-line flags over it, validated into frozen dataclasses.

A file describes many streams with per-stream options, plus the ``mqtt``, ``model`` and ``device`` sections::

    [defaults]                 # any per-stream key, for every stream
    threshold = 0.6

    [[streams]]
    name = "front"             # the stream id (optional: derived from the source)
    source = "rtsp://user:pass@cam.local/stream"
    alpha = 0.7                # per-stream keys: see STREAM_KEYS
    beta = 0.3

    [mqtt]
    url = "mqtt://localhost:1883"
    prefix = "streamer"

    [model]
    max_batch = 64

    [device]
    type = "auto"

    [homeassistant]            # MQTT discovery: a Home Assistant device per stream (pipelines.outputs.homeassistant)
    discovery = true

    metrics = ":9108"          # Prometheus /metrics (pipelines.outputs.metrics)
    ui = ":8080"               # the live web view (pipelines.outputs.webui), on localhost unless a host is given

Flags override the file (``--alpha`` sets alpha for every stream). Unknown keys and bad values raise
:class:`~streamer.errors.ConfigError` naming the key and what is allowed.
"""

from __future__ import annotations

import math
import os
import ssl
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from pipelines.stages.topics import check_prefix
from streamer.errors import ConfigError, StreamerError
from streamer.options import SourceOptions
from streamer.spec import SourceSpec, parse_source
from streamer.sync import SyncOptions

if TYPE_CHECKING:
    from models.heads import Checkpoint
    from streamer.ingest import IngestStream

DEFAULT_MQTT_URL = "mqtt://localhost:1883"
MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, kw_only=True)
class EventOptions:
    """When S(t) makes an event (see :mod:`pipelines.stages.events`)."""

    # an event starts when S >= threshold: 0.3 lies between nothing (S ~ 0) and one modality alone (S = 0.5 S_v or
    # 0.5 S_a with the default weights, ~0.45-0.5 for a clear sound or movement), both making ~0.9-1
    threshold: float = 0.3
    # seconds S must stay below the threshold for the event to end: the pauses within a sentence, a bark series, a
    # person walking through are shorter (so each is one event), two separate sounds' apart longer
    min_gap: float = 0.5
    min_duration: float = 0.0  # seconds an event must last to be reported; its start waits until then


EVENT_DEFAULTS = EventOptions()


# Home Assistant binary_sensor device classes an activity may take (per-stream key ``device_class``)
DEVICE_CLASSES = ("motion", "sound", "occupancy", "presence", "moving", "vibration", "problem")


@dataclass(frozen=True, kw_only=True)
class StreamConfig:
    spec: SourceSpec
    alpha: float = 0.5
    beta: float = 0.5
    device_class: str | None = None  # Home Assistant's class for the activity (None: see activity_class)
    events: EventOptions = field(default_factory=EventOptions)
    source: SourceOptions = field(default_factory=SourceOptions)
    sync: SyncOptions = field(default_factory=SyncOptions)

    @property
    def stream_id(self) -> str:
        return self.spec.stream_id

    def ingest(self) -> IngestStream:
        """What an ingest process needs to capture this stream."""
        from streamer.ingest import IngestStream

        return IngestStream(self.spec, self.source, self.sync)

    @property
    def activity_class(self) -> str:
        return self.device_class or ("sound" if self.beta > self.alpha else "motion")


@dataclass(frozen=True, kw_only=True)
class MqttConfig:
    """``url`` None: no broker (events only go to ``--events-out`` and the terminal)."""

    url: str | None = DEFAULT_MQTT_URL
    prefix: str = "streamer"
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    client_id: str | None = None
    keepalive: int = 30
    stats_interval: float = 10.0  # seconds between {prefix}/stats messages
    outbox_size: int = 10000  # messages kept while the broker is away; beyond that the oldest are dropped
    scores: bool = False  # publish every timestep's scores on {prefix}/{stream}/scores (QoS 0)
    snapshots: bool = True  # publish a JPEG of each event's peak frame on {prefix}/{stream}/snapshot
    ca_file: str | None = None  # mqtts: CA bundle (default: the system's)
    cert_file: str | None = None  # mqtts: client certificate
    key_file: str | None = None
    tls_insecure: bool = False  # mqtts: skip hostname verification (never the default)

    @property
    def host(self) -> str:
        return urlsplit(self.url or DEFAULT_MQTT_URL).hostname or "localhost"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url or DEFAULT_MQTT_URL)
        return parts.port or MQTT_SCHEMES.get(parts.scheme, 1883)

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
    device: str = "auto"
    autocast: bool = False
    max_batch: int = 64  # timesteps per model call, across streams
    max_wait_ms: float = 5.0  # how long the batcher waits for more timesteps once it has one
    tau: float = 10.0  # seconds: memory of the adaptive baselines (video: the last 2 tau s, audio: 0.8 tau s)
    luma_size: tuple[int, int] = (160, 90)
    sample_rate: int = 16000
    context_ms: float = 100.0
    threads: int = 1  # torch CPU threads for the model: the capture threads need the cores for decoding
    video: str | None = None  # package.module:Class of a custom S_v encoder
    video_weights: str | None = None  # its local state_dict
    audio: str | None = None
    audio_weights: str | None = None
    checkpoint: str | None = None  # a model made by `streamer train` (--model)


@dataclass(frozen=True, kw_only=True)
class HomeAssistantConfig:
    """MQTT discovery (:mod:`pipelines.outputs.homeassistant`)."""

    discovery: bool = False
    prefix: str = "homeassistant"  # Home Assistant's discovery prefix (its MQTT integration's setting)
    interval: float = 1.0  # seconds between the S, S_v and S_a sensor states (each the highest since the last)


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
        raise _fail(path, "[HOST]:PORT such as :9108 or 0.0.0.0:8080", value)
    return Address(host, int(port))


@dataclass(frozen=True, kw_only=True)
class AnalyzerConfig:
    streams: tuple[StreamConfig, ...]
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    duration: float | None = None  # media seconds to analyze per stream (None: to the end / until stopped)
    events_out: Path | None = None
    # "process": live streams captured in processes of their own (sharing them past 2 a core), files in one per
    # core (streamer.ingest);
    # "thread": capture threads in the analyzer's process (one interpreter lock for all)
    ingest: str = "process"
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    metrics: Address | None = None  # serve Prometheus /metrics here
    ui: Address | None = None  # serve the live web view here


# -- validation helpers --------------------------------------------------------------------------------------

Check = Callable[[str, Any], Any]  # (key path, raw value) -> value, or raises ConfigError


def _fail(path: str, allowed: str, value: Any) -> ConfigError:
    return ConfigError(f"{path}: expected {allowed}, got {value!r}")


def number(lo: float = -math.inf, hi: float = math.inf, *, lo_open: bool = False) -> Check:
    bound = f"> {lo:g}" if lo_open else f">= {lo:g}"
    allowed = "a number" + (f" {bound}" if lo > -math.inf else "") + (f" and <= {hi:g}" if hi < math.inf else "")

    def check(path: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise _fail(path, allowed, value)
        if value < lo or value > hi or (lo_open and value == lo):
            raise _fail(path, allowed, value)
        return float(value)

    return check


def integer(lo: int, hi: int) -> Check:
    def check(path: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise _fail(path, f"an integer from {lo} to {hi}", value)
        return value

    return check


def boolean(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, "true or false", value)
    return value


def string(path: str, value: Any) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise _fail(path, "a non-empty string", value)
    return value


def choice(*options: str) -> Check:
    def check(path: str, value: Any) -> str:
        if value not in options:
            raise _fail(path, "one of " + ", ".join(options), value)
        return str(value)

    return check


def size(path: str, value: Any) -> tuple[int, int]:
    width, sep, height = str(value).lower().partition("x")
    if not isinstance(value, str) or not sep or not width.isdigit() or not height.isdigit():
        raise _fail(path, 'WIDTHxHEIGHT such as "160x90"', value)
    return int(width), int(height)


def on_off_auto(path: str, value: Any) -> bool | None:
    if value == "auto":
        return None
    if isinstance(value, bool):
        return bool(value)
    if value in ("on", "off"):
        return bool(value == "on")
    raise _fail(path, 'true, false or "auto"', value)


def string_table(path: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(v, str | int | float) for v in value.values()):
        raise _fail(path, "a table of option = value", value)
    return {str(k): str(v) for k, v in value.items()}


def optional_path(path: str, value: Any) -> str:
    text = string(path, value)
    if not Path(text).expanduser().is_file():
        raise ConfigError(f"{path}: no such file: {text!r}")
    return str(Path(text).expanduser())


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


# -- the schema ----------------------------------------------------------------------------------------------

STREAM_KEYS: dict[str, Check] = {
    "alpha": number(0),
    "beta": number(0),
    "threshold": number(0, 1, lo_open=True),
    "min_gap": number(0),
    "min_duration": number(0),
    "hop_ms": number(5, 10000),
    "realtime": boolean,
    "loop": boolean,
    "rtsp_transport": choice("tcp", "udp"),
    "low_latency": on_off_auto,
    "fast_decode": on_off_auto,
    "hwaccel": string,
    "av_options": string_table,
    "stall_timeout": number(0, lo_open=True),
    "sync_wait_ms": number(0),
    "ca_file": optional_path,
    "tls_insecure": boolean,
    "video_track": integer(-1, 64),
    "audio_track": integer(-1, 64),
    "device_class": choice(*DEVICE_CLASSES),
}
STREAM_ENTRY_KEYS: dict[str, Check] = {"name": string, "source": string, **STREAM_KEYS}
MQTT_KEYS: dict[str, Check] = {
    "url": string,
    "prefix": string,
    "username": string,
    "password": string,
    "password_file": optional_path,
    "client_id": string,
    "keepalive": integer(5, 3600),
    "stats_interval": number(0.1),
    "outbox_size": integer(1, 10_000_000),
    "scores": boolean,
    "snapshots": boolean,
    "ca_file": optional_path,
    "cert_file": optional_path,
    "key_file": optional_path,
    "tls_insecure": boolean,
}
MODEL_KEYS: dict[str, Check] = {
    "max_batch": integer(1, 65536),
    "max_wait_ms": number(0, 10000),
    "tau": number(0.1),
    "luma_size": size,
    "sample_rate": integer(1000, 192000),
    "context_ms": number(0, 10000),
    "threads": integer(1, 256),
    "video": string,
    "video_weights": optional_path,
    "audio": string,
    "audio_weights": optional_path,
    "checkpoint": optional_path,
}
DEVICE_KEYS: dict[str, Check] = {"type": string, "autocast": boolean}
HOMEASSISTANT_KEYS: dict[str, Check] = {"discovery": boolean, "prefix": string, "interval": number(0.1)}
TOP_KEYS = ("defaults", "streams", "mqtt", "model", "device", "ingest", "homeassistant", "metrics", "ui")
METRICS_HOST = "0.0.0.0"  # Prometheus scrapes from elsewhere: all interfaces unless a host is given
UI_HOST = "127.0.0.1"  # the web view: this machine only unless a host is given


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


def build_config(
    file: Mapping[str, Any] | None = None,
    *,
    sources: Sequence[str] = (),
    stream_flags: Mapping[str, Any] | None = None,
    mqtt_flags: Mapping[str, Any] | None = None,
    model_flags: Mapping[str, Any] | None = None,
    device: str | None = None,
    duration: float | None = None,
    events_out: Path | None = None,
    environ: Mapping[str, str] = os.environ,
    extra_flags: Mapping[str, Any] | None = None,
) -> AnalyzerConfig:
    """The configuration from a parsed TOML document (or None) with flags over it; raises ConfigError.
    ``extra_flags``: ``metrics``, ``ui`` (addresses) and ``discovery`` (bool) over the file's."""
    try:
        config = _build(
            dict(file or {}), list(sources), dict(stream_flags or {}), dict(mqtt_flags or {}),
            dict(model_flags or {}), device, duration, events_out, environ,
        )  # fmt: skip
        return _with_extras(config, dict(file or {}), dict(extra_flags or {}))
    except ConfigError:
        raise
    except StreamerError as exc:  # a malformed source string
        raise ConfigError(str(exc)) from None


def _build(
    doc: dict[str, Any],
    sources: list[str],
    stream_flags: dict[str, Any],
    mqtt_flags: dict[str, Any],
    model_flags: dict[str, Any],
    device: str | None,
    duration: float | None,
    events_out: Path | None,
    environ: Mapping[str, str],
) -> AnalyzerConfig:
    defaults, flags, model = analysis_settings(doc, stream_flags, model_flags, device)
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

    learned = checkpoint_defaults(load_model(model.checkpoint)) if model.checkpoint is not None else {}
    streams: list[StreamConfig] = []
    seen: set[str] = set()
    for text, own in raw_streams:
        spec = parse_source(text)
        if spec.stream_id in seen:
            raise ConfigError(f"stream '{spec.stream_id}' is given twice: name one of them (NAME=URI)")
        seen.add(spec.stream_id)
        values = merged_stream_values(model, learned, defaults, own, flags, where=f"stream '{spec.stream_id}'")
        streams.append(stream_config(spec, values, model))

    mqtt = mqtt_config(take(doc.get("mqtt", {}), "mqtt", MQTT_KEYS) | take(mqtt_flags, "", MQTT_KEYS), environ)
    if duration is not None and not duration > 0:
        raise _fail("--duration", "a positive number of seconds", duration)
    ingest = doc.get("ingest", "process")
    if ingest not in ("process", "thread"):
        raise _fail("ingest", '"process" or "thread"', ingest)
    return AnalyzerConfig(streams=tuple(streams), mqtt=mqtt, model=model, duration=duration, events_out=events_out,
                          ingest=ingest)  # fmt: skip


def _with_extras(config: AnalyzerConfig, doc: dict[str, Any], flags: dict[str, Any]) -> AnalyzerConfig:
    ha = take(doc.get("homeassistant", {}), "homeassistant", HOMEASSISTANT_KEYS)
    if flags.get("discovery") is not None:
        ha["discovery"] = flags["discovery"]
    homeassistant = HomeAssistantConfig(**ha)
    check_prefix(homeassistant.prefix)
    if homeassistant.discovery and config.mqtt.url is None:
        raise ConfigError("homeassistant.discovery: needs a broker (mqtt.url is none)")
    endpoints: dict[str, Address | None] = {}
    for key, host in (("metrics", METRICS_HOST), ("ui", UI_HOST)):
        raw = flags.get(key, doc.get(key))
        where = f"--{key}" if flags.get(key) is not None else key
        endpoints[key] = None if raw is None else address(where, raw, default_host=host)
    m, u = endpoints["metrics"], endpoints["ui"]
    if m is not None and u is not None and m.port == u.port and m.port != 0:
        raise ConfigError(f"metrics and ui: both on port {m.port}; give them different ports")
    return replace(config, homeassistant=homeassistant, metrics=m, ui=u)


def analysis_settings(
    doc: Mapping[str, Any], stream_flags: Mapping[str, Any], model_flags: Mapping[str, Any], device: str | None
) -> tuple[dict[str, Any], dict[str, Any], ModelConfig]:
    """From a parsed config file and flags: the ``[defaults]`` per-stream values, the per-stream flags (both
    validated), and the model configuration (``[model]``, ``[device]`` and their flags)."""
    unknown = set(doc) - set(TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(TOP_KEYS)})")
    defaults = take(doc.get("defaults", {}), "defaults", STREAM_KEYS)
    flags = take(stream_flags, "", STREAM_KEYS)
    model_values = take(doc.get("model", {}), "model", MODEL_KEYS) | take(model_flags, "", MODEL_KEYS)
    device_values = take(doc.get("device", {}), "device", DEVICE_KEYS)
    if device is not None:
        device_values["type"] = device
    device_type = device_values.get("type", "auto")
    cuda_n = device_type.startswith("cuda:") and device_type[5:].isdigit()
    if device_type not in ("auto", "cpu", "cuda") and not cuda_n:
        raise _fail("device.type", "auto, cpu, cuda or cuda:N", device_type)
    model = ModelConfig(device=device_type, autocast=device_values.get("autocast", False), **model_values)
    return defaults, flags, model


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


def load_model(path: str) -> Checkpoint:
    """A model made by ``streamer train``; a file that is not one is a ConfigError naming it."""
    from models.heads import load_checkpoint  # torch: only when a model is given

    try:
        return load_checkpoint(Path(path))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def checkpoint_defaults(checkpoint: Checkpoint) -> dict[str, Any]:
    """The per-stream settings a trained model brings: its threshold, and alpha and beta for a weighted head."""
    values: dict[str, Any] = {"threshold": min(max(checkpoint.threshold, 1e-6), 1.0)}
    if checkpoint.weights is not None:
        values["alpha"], values["beta"] = checkpoint.weights
    return values


def stream_config(spec: SourceSpec, values: Mapping[str, Any], model: ModelConfig) -> StreamConfig:
    """One stream's settings from validated per-stream values (STREAM_KEYS) and the global analysis settings."""
    v = dict(values)
    hop = v.pop("hop_ms", 100.0) / 1000
    try:
        sync = SyncOptions(
            hop=hop,
            context=model.context_ms / 1000,
            max_wait=v.pop("sync_wait_ms", 500.0) / 1000,
            sample_rate=model.sample_rate,
        )
        events = EventOptions(
            threshold=v.pop("threshold", EVENT_DEFAULTS.threshold),
            min_gap=v.pop("min_gap", EVENT_DEFAULTS.min_gap),
            min_duration=v.pop("min_duration", EVENT_DEFAULTS.min_duration),
        )
        alpha, beta = v.pop("alpha", 0.5), v.pop("beta", 0.5)
        device_class = v.pop("device_class", None)
        if alpha + beta <= 0:
            raise ConfigError(
                f"stream '{spec.stream_id}': alpha and beta: at least one must be > 0 (with both 0, S is always 0)"
            )
        source = SourceOptions(
            luma_size=model.luma_size,
            sample_rate=model.sample_rate,
            segment_align=hop,
            av_options=MappingProxyType(v.pop("av_options", {})),
            **v,
        )
    except ValueError as exc:
        raise ConfigError(f"stream '{spec.stream_id}': {exc}") from None
    return StreamConfig(spec=spec, alpha=alpha, beta=beta, device_class=device_class, events=events, source=source,
                        sync=sync)  # fmt: skip


def mqtt_config(values: Mapping[str, Any], environ: Mapping[str, str]) -> MqttConfig:
    """Credentials come from, in order: the URL, ``username``/``password`` keys, ``password_file``, and the
    environment (``STREAMER_MQTT_USERNAME``, ``STREAMER_MQTT_PASSWORD``). They are never printed."""
    v = dict(values)
    url = v.pop("url", DEFAULT_MQTT_URL)
    if url in ("none", "off", ""):
        secrets = ("username", "password", "password_file")
        return MqttConfig(url=None, **{k: x for k, x in v.items() if k not in secrets})
    parts = urlsplit(url)
    if parts.scheme not in MQTT_SCHEMES or not parts.hostname:
        raise ConfigError("mqtt.url: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (or none)")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError("mqtt.url: the port must be a number from 1 to 65535") from None
    check_prefix(v.get("prefix", "streamer"))
    username = unquote(parts.username) if parts.username else v.pop("username", None)
    password = unquote(parts.password) if parts.password else v.pop("password", None)
    v.pop("username", None)
    v.pop("password", None)
    password_file = v.pop("password_file", None)
    if password is None and password_file is not None:
        try:
            password = Path(password_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"mqtt.password_file: cannot read {password_file!r}: {_reason(exc)}") from None
    username = username or environ.get("STREAMER_MQTT_USERNAME") or None
    password = password or environ.get("STREAMER_MQTT_PASSWORD") or None
    bare = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"  # credentials live apart, never in the URL
    check_tls_files(v.get("ca_file"), v.get("cert_file"), v.get("key_file"))
    return MqttConfig(url=bare, username=username, password=password, **v)


def check_tls_files(ca_file: str | None, cert_file: str | None, key_file: str | None) -> None:
    """Load the CA bundle and the client certificate and key as the MQTT client will, at start-up: a malformed
    file is one line naming the setting, not a traceback once the connection is tried."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(f"mqtt.ca_file: not a PEM CA certificate file: {ca_file!r}: {_reason(exc)}") from None
    if cert_file is not None:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            setting = "mqtt.cert_file / mqtt.key_file" if key_file else "mqtt.cert_file"
            raise ConfigError(f"{setting}: not a PEM certificate with its private key: {_reason(exc)}") from None
    elif key_file is not None:
        raise ConfigError("mqtt.key_file: given without mqtt.cert_file")


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())
