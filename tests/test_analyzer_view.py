"""The analyzer's read-only view (pipelines.outputs.observers.AnalyzerView): what the outputs (metrics, web view)
read of it are copies, never one of its live objects, so no output can change the analysis."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator, Mapping, MutableMapping

import pytest

from pipelines.analyzer import Analyzer
from pipelines.config import build_config
from pipelines.outputs.observers import AnalyzerView

SOURCE = "cam=synthetic:?events=av@1&duration=3&realtime=0&width=320&height=180"


@pytest.fixture
def analyzer() -> Iterator[Analyzer]:
    analyzer = Analyzer(build_config(mqtt_flags={"url": "none"}, sources=[SOURCE]))
    yield analyzer
    analyzer.runner.close()


def read_only(value: object) -> bool:
    """A value nothing can change: a scalar, a frozen dataclass, a tuple or a read-only mapping, all the way down."""
    if value is None or isinstance(value, str | bytes | int | float | bool):
        return True
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        frozen = type(value).__dataclass_params__.frozen  # type: ignore[attr-defined]
        return bool(frozen) and all(read_only(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, tuple):
        return all(read_only(v) for v in value)
    if isinstance(value, Mapping) and not isinstance(value, MutableMapping):
        return all(read_only(k) and read_only(v) for k, v in value.items())
    return False


def test_the_view_hands_out_no_mutable_analyzer_object(analyzer: Analyzer) -> None:
    view: AnalyzerView = analyzer
    members = sorted(name for name in vars(AnalyzerView) if not name.startswith("_"))
    for name in members:
        value = getattr(view, name)
        if callable(value):
            if inspect.signature(value).parameters:
                continue  # none takes arguments now; checked by the names below
            value = value()
        assert read_only(value), f"AnalyzerView.{name} hands out a {type(value).__name__} an output could change"
    assert members == ["device_name", "mqtt_connected", "outbox_counts", "stream_counts"]
    counts = view.stream_counts()
    assert set(counts) == {"cam"} and counts["cam"].state == "connecting"
    with pytest.raises(TypeError):
        counts["other"] = counts["cam"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        counts["cam"].frames = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.outbox_counts().messages = 1  # type: ignore[misc]


def test_the_view_is_a_copy_taken_when_asked(analyzer: Analyzer) -> None:
    before = analyzer.stream_counts()["cam"]
    analyzer.stats.stream("cam").frames += 3
    analyzer.stats.stream("cam").events += 1
    after = analyzer.stream_counts()["cam"]
    assert (before.frames, before.events) == (0, 0)
    assert (after.frames, after.events, after.dropped_frames, after.dropped_timesteps) == (3, 1, 0, 0)
    assert analyzer.outbox_counts() == type(analyzer.outbox_counts())(0, 0, 0, 0, 0)
