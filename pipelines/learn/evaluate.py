"""A detector's scores over labeled recordings -> events (by the run-time detector's rules) -> metrics.

The detector here is :func:`pipelines.events.event_intervals`, the array form of the :class:`EventDetector` that
``streamer run`` uses (a test keeps them equal), with the stream's ``min_gap`` and ``min_duration``; only the
threshold varies when sweeping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from models.device import resolve_device
from models.fusion import fuse
from models.heads import INPUTS, FusionHead
from pipelines.config import EventOptions
from pipelines.learn.extract import RecordingScores
from pipelines.learn.metrics import EventCounts, Interval, accuracy, match_events, precision_recall_curve, roc_auc
from pipelines.stages.events import event_intervals

Scores = npt.NDArray[np.float64]
THRESHOLDS: tuple[float, ...] = tuple(np.round(np.arange(0.02, 0.995, 0.01), 2).tolist())  # sweeps: 0.02 ... 0.99


def fused_scores(rec: RecordingScores, alpha: float, beta: float) -> Scores:
    """S = alpha * S_v + beta * S_a with the missing-modality rule: :func:`models.fusion.fuse` itself."""
    v = {k: torch.from_numpy(rec.values[k]).float() for k in ("s_v", "s_a", "has_v", "has_a")}
    n = len(rec)
    s = fuse(v["s_v"], v["s_a"], v["has_v"] > 0, v["has_a"] > 0, torch.full((n,), alpha), torch.full((n,), beta))
    return s.double().numpy()


@torch.inference_mode()
def head_scores(head: FusionHead, recs: Sequence[RecordingScores], device: str = "auto") -> list[Scores]:
    """A learned head's S for every timestep, on the device, as at run time."""
    where = resolve_device(device)
    head = head.to(where).eval()
    return [head(torch.from_numpy(r.table(INPUTS)).to(where)).double().cpu().numpy() for r in recs]


def detect(rec: RecordingScores, s: Scores, options: EventOptions) -> list[Interval]:
    return event_intervals(rec.t, s, rec.hop, options)


def eventcounts_dict(recs: Sequence[RecordingScores], scores: Sequence[Scores], options: EventOptions) -> EventCounts:
    total = EventCounts()
    for rec, s in zip(recs, scores, strict=True):
        total += EventCounts.of(detect(rec, s, options), rec.recording.intervals)
    return total


def sweep(
    recs: Sequence[RecordingScores], scores: Sequence[Scores], options: EventOptions, thresholds: Sequence[float]
) -> list[EventCounts]:
    return [eventcounts_dict(recs, scores, replace(options, threshold=float(t))) for t in thresholds]


@dataclass(frozen=True)
class Choice:
    threshold: float
    counts: EventCounts
    plateau: tuple[float, float]  # the thresholds around it with the same F1


def best_threshold(
    recs: Sequence[RecordingScores], scores: Sequence[Scores], options: EventOptions,
    thresholds: Sequence[float] = THRESHOLDS,
) -> Choice:  # fmt: skip
    """The threshold with the best event F1; of the longest run of thresholds that reach it, the middle one
    (the setting least sensitive to a shift in the scores)."""
    counts = sweep(recs, scores, options, thresholds)
    return _middle_of_best(list(thresholds), counts)


def _middle_of_best(thresholds: list[float], counts: list[EventCounts]) -> Choice:
    f1 = np.array([c.f1 for c in counts])
    best = f1 >= f1.max() - 1e-9
    runs = np.flatnonzero(np.diff(np.concatenate([[0], best.astype(np.int8), [0]]))).reshape(-1, 2)
    first, stop = max(runs.tolist(), key=lambda r: (r[1] - r[0], -r[0]))
    middle = (first + stop - 1) // 2
    return Choice(thresholds[middle], counts[middle], (thresholds[first], thresholds[stop - 1]))


@dataclass(frozen=True)
class RecordingResult:
    stream_id: str
    counts: EventCounts
    detected: list[Interval]
    accuracy: float
    roc_auc: float | None


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one detector (its scores and event options) on labeled recordings."""

    options: EventOptions
    counts: EventCounts
    accuracy: float
    roc_auc: float | None
    recordings: list[RecordingResult]
    label_recall: dict[str, tuple[int, int]]  # label -> (found, labeled)
    timesteps: int
    event_curve: list[tuple[float, float, float]]  # (threshold, precision, recall) of events
    timestep_curve: tuple[list[float], list[float]]  # (precision, recall) of timesteps

    def as_dict(self) -> dict[str, Any]:
        c = self.counts
        return {
            "threshold": self.options.threshold,
            "min_gap": self.options.min_gap,
            "min_duration": self.options.min_duration,
            "events": counts_dict(c),
            "timesteps": {"count": self.timesteps, "accuracy": _r(self.accuracy), "roc_auc": _r(self.roc_auc)},
            "labels": {k or "(none)": {"found": f, "labeled": n} for k, (f, n) in self.label_recall.items()},
            "recordings": {
                r.stream_id: {
                    **counts_dict(r.counts),
                    "accuracy": _r(r.accuracy),
                    "roc_auc": _r(r.roc_auc),
                    "detected": [[round(a, 3), round(b, 3)] for a, b in r.detected],
                }
                for r in self.recordings
            },
            "event_pr_curve": [{"threshold": t, "precision": _r(p), "recall": _r(r)} for t, p, r in self.event_curve],
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def counts_dict(c: EventCounts) -> dict[str, Any]:
    """Event counts as a report shows them: precision, recall, F1, the counts and the mean IoU."""
    return {"precision": _r(c.precision), "recall": _r(c.recall), "f1": _r(c.f1), "matched": c.matched,
            "detected": c.detected, "labeled": c.labeled, "mean_iou": _r(c.mean_iou)}  # fmt: skip


def evaluate(recs: Sequence[RecordingScores], scores: Sequence[Scores], options: EventOptions) -> Evaluation:
    results: list[RecordingResult] = []
    label_recall: dict[str, list[int]] = {}
    total = EventCounts()
    for rec, s in zip(recs, scores, strict=True):
        detected = detect(rec, s, options)
        labeled = rec.recording.intervals
        counts = EventCounts.of(detected, labeled)
        total += counts
        found = {j for _, j, _ in match_events(detected, labeled)}
        for j, event in enumerate(rec.recording.events):
            tally = label_recall.setdefault(event.label, [0, 0])
            tally[0] += j in found
            tally[1] += 1
        y = rec.labels
        results.append(RecordingResult(rec.recording.stream_id, counts, detected,
                                       accuracy(s >= options.threshold, y), roc_auc(s, y)))  # fmt: skip
    all_s = np.concatenate([np.asarray(s) for s in scores]) if scores else np.zeros(0)
    all_y = np.concatenate([r.labels for r in recs]) if recs else np.zeros(0, dtype=bool)
    curve = sweep(recs, scores, options, THRESHOLDS)
    precision, recall, _ = precision_recall_curve(all_s, all_y)
    return Evaluation(
        options=options,
        counts=total,
        accuracy=accuracy(all_s >= options.threshold, all_y),
        roc_auc=roc_auc(all_s, all_y),
        recordings=results,
        label_recall={k: (v[0], v[1]) for k, v in sorted(label_recall.items())},
        timesteps=len(all_s),
        event_curve=[(float(t), c.precision, c.recall) for t, c in zip(THRESHOLDS, curve, strict=True)],
        timestep_curve=(precision.tolist(), recall.tolist()),
    )
