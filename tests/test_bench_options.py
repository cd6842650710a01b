"""The benchmarks' settings (pipelines/bench/options.py): declared once, the analyzer's own taken from the
analyzer's schema, never config file keys, and read back from `streamer bench ...`'s flags.

What every command's own settings share (help from the declaration, the defaults, a bad value a usage error, no
default written twice, ``--help`` without torch) is checked in test_settings.py, for the learning commands too.
"""

from __future__ import annotations

import pytest

from pipelines.bench.options import OPTIONS, SETTINGS, CapacityOptions, LatencyOptions, ThroughputOptions, described
from pipelines.cli.main import build_parser, parse_args
from pipelines.config import SETTINGS as SCHEMA_SETTINGS
from pipelines.config import EventOptions, ModelConfig
from pipelines.flags import values_from
from pipelines.settings_doc import settings_markdown
from streamer.options import SourceOptions
from streamer.settings import setting_of
from streamer.sync import SyncOptions

# what a benchmark hands to the analyzer it runs, and where each is declared
ANALYZERS = [
    (LatencyOptions, "hop_ms", SyncOptions, "hop"),
    (LatencyOptions, "max_wait_ms", ModelConfig, "max_wait_ms"),
    (LatencyOptions, "device", ModelConfig, "device"),
    (LatencyOptions, "threshold", EventOptions, "threshold"),
    (LatencyOptions, "hwaccel", SourceOptions, "hwaccel"),
    (CapacityOptions, "device", ModelConfig, "device"),
    (CapacityOptions, "hwaccel", SourceOptions, "hwaccel"),
    (ThroughputOptions, "device", ModelConfig, "device"),
    # a capacity probe is a latency run of the same picture
    (CapacityOptions, "size", LatencyOptions, "size"),
    (CapacityOptions, "fps", LatencyOptions, "fps"),
    (CapacityOptions, "audio_frame_ms", LatencyOptions, "audio_frame_ms"),
]


@pytest.mark.parametrize(("options", "name", "home", "home_name"), ANALYZERS)
def test_a_shared_setting_is_its_homes(options: type, name: str, home: type, home_name: str) -> None:
    """Default (in the flag's unit: the hop in ms), check, help and flag as the analyzer's own declaration."""
    ours, theirs = setting_of(options, name), setting_of(home, home_name)
    assert ours.default == theirs.config_default
    assert (ours.check, ours.help, ours.unit, ours.option) == (theirs.check, theirs.help, theirs.unit, theirs.option)


def test_the_flags_give_the_options() -> None:
    parser = build_parser()
    for command, cls in (("latency", LatencyOptions), ("capacity", CapacityOptions),
                         ("throughput", ThroughputOptions)):  # fmt: skip
        assert cls(**values_from(parse_args(parser, ["bench", command]), cls)) == cls()  # no flag: the defaults
    args = parse_args(parser, ["bench", "latency", "--streams", "2", "--hop-ms", "50", "--size", "320x180",
                               "--audio-frame-ms", "20", "--threshold", "0.6", "--impulse", "box"])  # fmt: skip
    assert LatencyOptions(**values_from(args, LatencyOptions)) == LatencyOptions(
        streams=2, hop_ms=50.0, size=(320, 180), audio_frame_ms=20, threshold=0.6, impulse="box"
    )
    args = parse_args(parser, ["bench", "throughput", "--streams", "1,3", "--repeats", "1", "--device", "cpu"])
    assert ThroughputOptions(**values_from(args, ThroughputOptions)) == ThroughputOptions(
        streams=(1, 3), repeats=1, device="cpu"
    )
    args = parse_args(parser, ["bench", "capacity", "--start", "2", "--limit", "6", "--fps", "15"])
    assert CapacityOptions(**values_from(args, CapacityOptions)) == CapacityOptions(start=2, limit=6, fps=15)


def test_bench_settings_are_flags_only() -> None:
    """Not config file keys, not rows of docs/settings.md: `streamer bench ... --help` documents them."""
    assert {cls.__name__ for cls in OPTIONS}.isdisjoint(s.owner for s in SCHEMA_SETTINGS)
    assert all(not s.file and s.commands and {c.split()[0] for c in s.commands} == {"bench"} for s in SETTINGS)
    docs = settings_markdown()
    for flag in ("--impulses", "--interval", "--audio-frame-ms", "--repeats", "--start", "--limit"):
        assert flag not in docs


def test_a_report_states_the_picture_as_width_and_height() -> None:
    report = described(LatencyOptions(size=(320, 180)))
    assert (report["width"], report["height"]) == (320, 180) and "size" not in report
    assert report["threshold"] == EventOptions().threshold and report["hop_ms"] == 1000 * SyncOptions().hop
