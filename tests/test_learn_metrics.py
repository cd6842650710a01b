"""Metrics on hand-computed cases, the labels file, and the offline event detector against the live one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.config import EventOptions
from pipelines.learn.labels import load_dataset
from pipelines.learn.metrics import (
    EventCounts,
    accuracy,
    iou,
    match_events,
    precision_recall_curve,
    roc_auc,
    timestep_labels,
)
from pipelines.stages.events import EventDetector, Scores, clear_steps, event_intervals
from streamer.errors import ConfigError

HOP = 0.1


def test_iou_by_hand() -> None:
    assert iou((0, 2), (1, 3)) == pytest.approx(1 / 3)
    assert iou((0, 1), (1, 2)) == 0.0
    assert iou((0, 1), (0, 1)) == 1.0


def test_event_precision_recall_f1_by_hand() -> None:
    detected = [(0.0, 1.0), (4.0, 5.2), (9.0, 9.2)]
    labeled = [(0.1, 1.1), (4.0, 5.0), (20.0, 21.0)]
    # IoU 0.9/1.1 and 1.0/1.2 match; (9, 9.2) is a false alarm, (20, 21) a miss
    counts = EventCounts.of(detected, labeled)
    assert (counts.matched, counts.detected, counts.labeled) == (2, 3, 3)
    assert counts.precision == pytest.approx(2 / 3) and counts.recall == pytest.approx(2 / 3)
    assert counts.f1 == pytest.approx(2 / 3)
    assert counts.mean_iou == pytest.approx((0.9 / 1.1 + 1 / 1.2) / 2)
    total = counts + EventCounts.of([(30.0, 31.0)], [(30.0, 31.0)])
    assert (total.matched, total.detected, total.labeled) == (3, 4, 4) and total.f1 == pytest.approx(0.75)


def test_matching_at_iou_0_3_one_to_one() -> None:
    assert match_events([(0.0, 1.0)], [(0.5, 1.5)]) == [(0, 0, pytest.approx(1 / 3))]  # 0.333 >= 0.3
    assert match_events([(0.0, 1.0)], [(0.7, 1.7)]) == []  # 0.3 / 1.7 = 0.18
    # one long detection over two labeled events counts once: P = 1, R = 1/2
    counts = EventCounts.of([(0.0, 2.0)], [(0.0, 1.0), (1.0, 2.0)])
    assert (counts.precision, counts.recall, counts.f1) == (1.0, 0.5, pytest.approx(2 / 3))
    # highest IoU first: the better-aligned detection takes the labeled event
    assert match_events([(0.0, 1.4), (0.0, 1.0)], [(0.0, 1.0)]) == [(1, 0, 1.0)]


def test_empty_conventions() -> None:
    nothing = EventCounts.of([], [])
    assert (nothing.precision, nothing.recall, nothing.f1) == (1.0, 1.0, 1.0)
    missed = EventCounts.of([], [(0.0, 1.0)])
    assert (missed.precision, missed.recall, missed.f1) == (1.0, 0.0, 0.0)
    false_alarm = EventCounts.of([(0.0, 1.0)], [])
    assert (false_alarm.precision, false_alarm.recall, false_alarm.f1) == (0.0, 1.0, 0.0)


def test_timestep_labels_accuracy_and_roc_auc_by_hand() -> None:
    t = np.arange(4) * HOP
    assert timestep_labels(t, HOP, [(0.15, 0.3)]).tolist() == [False, True, True, False]
    assert accuracy([1, 1, 0, 0], [1, 0, 0, 0]) == 0.75
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)  # 3 of 4 pairs ordered
    assert roc_auc([0.5, 0.5], [0, 1]) == 0.5  # a tie counts half
    assert roc_auc([0.2, 0.9], [0, 1]) == 1.0
    assert roc_auc([0.2, 0.9], [1, 1]) is None


def test_precision_recall_curve_by_hand() -> None:
    precision, recall, thresholds = precision_recall_curve([0.9, 0.8, 0.8, 0.1], [1, 0, 1, 0])
    assert thresholds.tolist() == [0.9, 0.8, 0.1]
    assert precision.tolist() == pytest.approx([1.0, 2 / 3, 0.5])
    assert recall.tolist() == pytest.approx([0.5, 1.0, 1.0])


def live_intervals(t: list[float], s: list[float], options: EventOptions) -> list[tuple[float, float]]:
    detector = EventDetector("s", options, 0.5, 0.5)
    messages = [m for ti, si in zip(t, s, strict=True) for m in detector.update(Scores(ti, HOP, si, si, si))]
    messages += detector.flush()
    ends = [m.event for m in messages if hasattr(m, "peak_frame")]
    return [(e.start_t, e.t) for e in ends if e.start_t is not None]


@given(
    values=st.lists(st.sampled_from([0.0, 0.3, 0.5, 0.6, 1.0]), min_size=1, max_size=60),
    jumps=st.lists(st.integers(1, 3), min_size=60, max_size=60),
    threshold=st.sampled_from([0.3, 0.5, 0.55, 1.0]),
    min_gap=st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.45]),
    min_duration=st.sampled_from([0.0, 0.1, 0.2, 0.35]),
)
def test_offline_events_are_the_live_detectors(
    values: list[float], jumps: list[int], threshold: float, min_gap: float, min_duration: float
) -> None:
    k = np.concatenate([[0], np.cumsum(jumps)])[: len(values)]  # timesteps, sometimes with holes (reconnects)
    t = [float(x) * HOP for x in k]
    options = EventOptions(threshold=threshold, min_gap=min_gap, min_duration=min_duration)
    clear = clear_steps(values, values, np.ones(len(values)), np.ones(len(values)), options)  # live: s_v = s_a = S
    offline, live = event_intervals(t, values, HOP, options, clear), live_intervals(t, values, options)
    assert len(offline) == len(live)
    assert np.allclose(np.array(offline).reshape(-1), np.array(live).reshape(-1)), (offline, live)


def test_labels_csv_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text(
        "# my recordings\nfile,start,end,label\ndoor.mp4,9.5,10,knock\ndoor.mp4,4,5.2,door\nquiet.mp4,,,\n"
        "sub/door.mp4,1,2,\n"
    )
    data = load_dataset(tmp_path)
    assert [r.stream_id for r in data.recordings] == ["door", "quiet", "door_2"]
    door = data.recordings[0]
    assert door.path == tmp_path / "door.mp4" and door.intervals == [(4.0, 5.2), (9.5, 10.0)]
    assert [e.label for e in door.events] == ["door", "knock"] and data.n_events == 3
    assert data.only(["door"]).n_events == 1 and data.labels == ["", "door", "knock"]
    (tmp_path / "l.jsonl").write_text('{"file": "a.mkv", "start": 1, "end": 2, "label": "x"}\n\n{"file": "b.mkv"}\n')
    data = load_dataset(tmp_path / "l.jsonl")
    assert [(r.stream_id, r.intervals) for r in data.recordings] == [("a", [(1.0, 2.0)]), ("b", [])]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,start,end\na.mp4,5,4\n", "labels.csv:2: end (4) must be after start (5)"),
        ("file,start,end\na.mp4,x,4\n", "labels.csv:2: 'start' must be a number of seconds >= 0, got 'x'"),
        ("file,begin,end\n", "labels.csv:1: the header must name file, start, end"),
        ("file,start,end\n,1,2\n", "labels.csv:2: 'file' must name a recording"),
        ("file,start,end\n", "no recordings listed"),
    ],
)
def test_bad_labels_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(ConfigError, match="^.*" + message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(tmp_path)
