"""The benchmark commands' settings, each declared once, here: ``streamer bench latency``, ``capacity`` and
``throughput`` take their flags, the flags' help and the defaults from these dataclasses
(:func:`pipelines.flags.add_setting_flags`, read back with :func:`~pipelines.flags.values_from`).

A field with :func:`~streamer.settings.setting` metadata is a flag of its command (never a config file key: the
benchmarks are not in :data:`pipelines.config.SCHEMA`, so ``docs/settings.md`` leaves them out); a plain field
is internal. The settings a benchmark hands to the analyzer it runs (the hop, the device, the batcher's wait,
the threshold, hardware decoding) are :func:`shared` from the analyzer's schema: their default, check, unit,
help and flag are stated there, and a change there changes the benchmark too. The picture a capacity probe
serves is the latency benchmark's, shared the same way.

This module stays light (no torch, av, matplotlib or aiomqtt): the command line imports it to build its parser.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipelines.config import EventOptions, ModelConfig
from streamer.options import SourceOptions
from streamer.settings import (
    Check,
    Setting,
    boolean,
    choice,
    command_setting,
    fail,
    integer,
    number,
    setting_of,
    settings_of,
    size,
)
from streamer.sync import SyncOptions

LATENCY = frozenset({"bench latency"})
CAPACITY = frozenset({"bench capacity"})
THROUGHPUT = frozenset({"bench throughput"})


def shared(owner: type, name: str, commands: frozenset[str]) -> Any:
    """A field of a benchmark's options for ``owner``'s setting ``name``: its default (in the unit its flag takes:
    ms for the hop), check, unit, help and flag, all as declared on ``owner``."""
    s = setting_of(owner, name)
    return command_setting(
        s.config_default,
        check=s.check,
        help=s.help,
        unit=s.unit,
        flag=s.option,
        commands=commands,
        metavar=s.metavar,
        shown=s.shown,
    )


@dataclass(frozen=True)
class _IntChoice(Check):
    """One of a few whole numbers (the Opus frame lengths the impulse server takes)."""

    options: tuple[int, ...]

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(map(str, self.options))

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(map(str, self.options))

    def __call__(self, path: str, value: Any) -> int:
        if isinstance(value, bool) or value not in self.options:
            raise fail(path, self.allowed, value)
        return int(value)

    def parse(self, text: str) -> int:
        return int(text)


class _StreamCounts(Check):
    """``1,2,4,8``: the stream counts a benchmark measures, each >= 1."""

    allowed = "stream counts like 1,2,4,8"
    metavar = "N[,N...]"

    def __call__(self, path: str, value: Any) -> tuple[int, ...]:
        if not isinstance(value, tuple) or not value or not all(type(v) is int and v >= 1 for v in value):
            raise fail(path, self.allowed, value)
        return value

    def parse(self, text: str) -> tuple[int, ...]:
        return tuple(int(v) for v in text.split(","))


stream_counts: Check = _StreamCounts()


@dataclass(frozen=True, kw_only=True)
class LatencyOptions:
    """``streamer bench latency`` (:mod:`pipelines.bench.latency`), and each probe of ``bench capacity``."""

    streams: int = command_setting(1, check=integer(1, 4096), commands=LATENCY, help="analyzer streams at once")
    impulses: int = command_setting(50, check=integer(1, 100_000), commands=LATENCY, help="impulses to measure")
    hop_ms: float = shared(SyncOptions, "hop", LATENCY)
    max_wait_ms: float = shared(ModelConfig, "max_wait_ms", LATENCY)
    device: str = shared(ModelConfig, "device", LATENCY)
    # decode video on this hardware device (streamer.hwaccel): the analyzer and the decode-only clients
    hwaccel: str | None = shared(SourceOptions, "hwaccel", LATENCY)
    early: bool = shared(SyncOptions, "early", LATENCY)  # the analyzer's: --no-early-start measures without it
    clips: bool = command_setting(False, check=boolean, commands=LATENCY, flag="--clips",
                                  help="the analyzer writes each event's clip (into the work folder)")  # fmt: skip
    interval: float = command_setting(
        2.0,
        check=number(0, lo_open=True),
        unit="s",
        commands=LATENCY,
        help="time between impulses, plus a jitter spread evenly",
    )
    jitter: float = 0.5  # the impulse server's: each impulse comes up to this much later, spread evenly
    # "flash": a white frame (lighting to the motion detector: impulses are heard only); "box": a white box over
    # the middle quarter with the tone, an A+V impulse seen and heard
    impulse: str = command_setting(
        "flash",
        check=choice("flash", "box"),
        commands=LATENCY,
        help="flash: a white frame and a tone (heard only: a whole-picture flash is lighting); box: a white box "
        "over a quarter of the picture with the tone (seen and heard)",
    )
    threshold: float = shared(EventOptions, "threshold", LATENCY)
    size: tuple[int, int] = command_setting(
        (640, 360), check=size, commands=LATENCY, metavar="WxH", help="picture size"
    )
    fps: int = command_setting(30, check=integer(1, 240), commands=LATENCY, help="frame rate")
    # the Opus frame (packet) length: 10 ms is the most per-packet work, 20 ms is common
    audio_frame_ms: int = command_setting(
        10, check=_IntChoice((10, 20, 40, 60)), unit="ms", commands=LATENCY, help="Opus frame (packet) length"
    )
    # decode-only clients (the floor; ``streams`` of them with ``decode_only``, when no analyzer runs)
    decode_only: bool = False


@dataclass(frozen=True, kw_only=True)
class CapacityOptions:
    """``streamer bench capacity`` (:mod:`pipelines.bench.capacity`): its probes are latency runs of this picture."""

    size: tuple[int, int] = shared(LatencyOptions, "size", CAPACITY)
    fps: int = shared(LatencyOptions, "fps", CAPACITY)
    audio_frame_ms: int = shared(LatencyOptions, "audio_frame_ms", CAPACITY)
    impulses: int = command_setting(8, check=integer(1, 100_000), commands=CAPACITY, help="impulses per probe")
    interval: float = 1.5  # between a probe's impulses: shorter than a latency run's, for more probes an hour
    start: int = command_setting(
        8, check=integer(1, 4096), commands=CAPACITY, help="first N tried; doubles, then bisects"
    )
    limit: int = command_setting(128, check=integer(1, 4096), commands=CAPACITY, help="largest N tried")
    step: int = command_setting(
        4, check=integer(1, 4096), commands=CAPACITY, help="resolution of the search in streams"
    )
    device: str = shared(ModelConfig, "device", CAPACITY)
    hwaccel: str | None = shared(SourceOptions, "hwaccel", CAPACITY)  # in both modes
    early: bool = shared(SyncOptions, "early", CAPACITY)
    clips: bool = shared(LatencyOptions, "clips", CAPACITY)  # the analyzer's probes write clips


STREAM_COUNTS = (1, 2, 4, 8)  # throughput's stream counts unless given


@dataclass(frozen=True, kw_only=True)
class ThroughputOptions:
    """``streamer bench throughput`` (:mod:`pipelines.bench.throughput`), and its child measurements."""

    streams: tuple[int, ...] = command_setting(
        STREAM_COUNTS,
        check=stream_counts,
        commands=THROUGHPUT,
        shown=",".join(map(str, STREAM_COUNTS)),
        help="the stream counts measured",
    )
    repeats: int = command_setting(
        3, check=integer(1, 1000), commands=THROUGHPUT, help="measurements per count, their median reported"
    )
    seconds: float = command_setting(
        20.0, check=number(0, lo_open=True), unit="s", commands=THROUGHPUT, help="length of the generated clip"
    )
    device: str = shared(ModelConfig, "device", THROUGHPUT)


OPTIONS: tuple[type, ...] = (LatencyOptions, CapacityOptions, ThroughputOptions)
SETTINGS: tuple[Setting, ...] = tuple(s for cls in OPTIONS for s in settings_of(cls))


def described(options: LatencyOptions | CapacityOptions) -> dict[str, Any]:
    """The options as a report states them: the picture as ``width`` and ``height``."""
    values = asdict(options)
    width, height = values.pop("size")
    return {"width": width, "height": height, **values}
