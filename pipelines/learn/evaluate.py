"""A detector's scores over labeled recordings -> events (by the run-time detector's rules) -> metrics.

The detector here is :func:`pipelines.events.event_intervals`, the array form of the :class:`EventDetector` that
``streamer run`` uses (a test keeps them equal), with the stream's ``min_gap`` and ``min_duration``; only the
threshold varies when sweeping. :func:`choose_threshold` picks a threshold from a sweep (for ``calibrate`` and
``train``): on a plateau that holds when the scores shift, not the best single point.
"""

from __future__ import annotations

import math
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
from pipelines.stages.events import clear_steps, event_intervals, rounded

Scores = npt.NDArray[np.float64]
THRESHOLDS: tuple[float, ...] = tuple(np.round(np.arange(0.02, 0.995, 0.01), 2).tolist())  # sweeps: 0.02 ... 0.99
# How far the scores of recordings not in the set may move, for choose_threshold: on the real-world set a sound's
# peak S_a rises by about 0.01 a dB from 11 to 20 dB over its background, so with alpha = beta = 0.5, 0.03 of S
# is about 6 dB of level, what another recording of the same scene may differ by.
SHIFT = 0.03
OUT_OF_RANGE = "the best may lie beyond it: check the choice on recordings not in this set (streamer evaluate)"


def fused_scores(rec: RecordingScores, alpha: float, beta: float) -> Scores:
    """S = alpha * S_v + beta * S_a with the missing-modality rule: :func:`models.fusion.fuse` itself."""
    v = {k: torch.from_numpy(rec.values[k]).float() for k in ("s_v", "s_a", "has_v", "has_a")}
    n = len(rec)
    s = fuse(v["s_v"], v["s_a"], v["has_v"] > 0, v["has_a"] > 0, torch.full((n,), alpha), torch.full((n,), beta))
    return s.double().numpy()


@torch.inference_mode()
def head_scores(head: FusionHead, recs: Sequence[RecordingScores], device: str) -> list[Scores]:
    """A learned head's S for every timestep, on ``device`` (the model's, or "cpu"), as at run time."""
    where = resolve_device(device)
    head = head.to(where).eval()
    return [head(torch.from_numpy(r.table(INPUTS)).to(where)).double().cpu().numpy() for r in recs]


def detect(rec: RecordingScores, s: Scores, options: EventOptions) -> list[Interval]:
    v = rec.values
    return event_intervals(rec.t, s, rec.hop, options, clear_steps(v["s_v"], v["s_a"], v["has_v"], v["has_a"], options))


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
class Run:
    """Where a 1-D search settled: ``index``, the middle of the run ``first`` .. ``last`` (grid indices)."""

    index: int
    first: int
    last: int


def tolerance(f1: float, events: int) -> float:
    """F1 differences smaller than this are noise: about one standard error of an F1 measured on ``events``
    labeled events (binomial approximation), as in the one-standard-error rule of model selection. A small set
    tells little, so it widens the plateau; a set separated perfectly (F1 1) has none."""
    return math.sqrt(max(f1 * (1.0 - f1), 0.0) / max(events, 1))


def true_runs(mask: npt.ArrayLike) -> list[tuple[int, int]]:
    """The contiguous runs of True in a 1-D ``mask``, as ``(first, stop)`` index pairs, in order."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(mask, dtype=np.int8), [0]])))
    return [(first, stop) for first, stop in edges.reshape(-1, 2).tolist()]


def widest_run(good: npt.ArrayLike, values: npt.ArrayLike, *, anchors: npt.ArrayLike = True) -> Run:
    """The widest contiguous run of ``good`` grid points that holds one of ``anchors``, and its middle (the lower
    one of two). Ties go to the run holding the higher value, then to the lower run."""
    v = np.asarray(values, dtype=np.float64)
    held = np.broadcast_to(np.asarray(anchors, dtype=bool), v.shape)
    runs = [(first, stop) for first, stop in true_runs(good) if held[first:stop].any()]
    if not runs:
        raise ValueError("no run of good values holds an anchor")

    def key(run: tuple[int, int]) -> tuple[int, float]:
        first, stop = run
        return stop - first, float(v[first:stop].max())

    first, stop = max(runs, key=key)  # max keeps the first (lowest) of equal keys
    return Run((first + stop - 1) // 2, first, stop - 1)


def nearest_within(values: npt.ArrayLike, tolerance: float, *, centre: int, inside: bool = False) -> Run:
    """Of the grid points whose value is within ``tolerance`` of the best, the one nearest ``centre`` (of two as
    near, the higher, then the lower), with the run of such points that holds it. With ``inside``, not a point
    at the edge of its run next to a worse one (an end of the grid has nothing beyond it to fall off; a run of one
    or two points gives its middle).

    The one-standard-error rule of model selection: of the settings the data cannot tell apart, the plainest, here
    the one nearest the design default (balanced weights, the default threshold). Not their middle: a set holding
    few events of one sense rates a wide run of weights as good, reaching the end that leaves that sense out, and
    the middle drifts there (measured in docs/learn.md).
    """
    v = np.asarray(values, dtype=np.float64)
    candidates: list[Run] = []
    for first, stop in true_runs(v >= v.max() - tolerance - 1e-9):
        low, high = first, stop - 1
        if inside:
            low, high = low + (first > 0), high - (stop < len(v))
            if low > high:
                low = high = (first + stop - 1) // 2
        candidates += [Run(i, first, stop - 1) for i in range(low, high + 1)]
    return min(candidates, key=lambda run: (abs(run.index - centre), -v[run.index], run.index))


def robust_f1(thresholds: npt.ArrayLike, f1: npt.ArrayLike, shift: float = SHIFT) -> npt.NDArray[np.float64]:
    """Each threshold's lowest F1 among the thresholds within ``shift`` of it (the grid's ends clip the window)."""
    t, f = np.asarray(thresholds, dtype=np.float64), np.asarray(f1, dtype=np.float64)
    near = np.abs(t[:, None] - t[None, :]) <= shift + 1e-9
    return np.asarray(np.where(near, f[None, :], np.inf).min(axis=1), dtype=np.float64)


def bound_warning(
    name: str, grid: Sequence[float], run: Run, *, top: str, bottom: str, plateau: bool, chosen: str = "the middle"
) -> str | None:
    """A line when the choice sits at an end of the searched ``grid`` (``top``/``bottom`` say what that means) or,
    with ``plateau``, when its plateau (which it is ``chosen`` of) reaches one: what lies beyond was not searched,
    so the choice may be off."""
    searched = f"the searched range {grid[0]:g}-{grid[-1]:g}"
    for end, side, advice, edge in ((len(grid) - 1, "top", top, run.last), (0, "bottom", bottom, run.first)):
        if run.index == end:
            return f"{name} {grid[end]:g} is at the {side} of {searched}; {advice}"
        if plateau and edge == end:
            return (f"{name} {grid[run.index]:g} is {chosen} of {grid[run.first]:g}-{grid[run.last]:g}, which "
                    f"reaches the {side} of {searched}; {advice}")  # fmt: skip
    return None


@dataclass(frozen=True)
class Choice:
    """A threshold chosen by :func:`choose_threshold`, with what it was chosen from."""

    threshold: float
    counts: EventCounts  # at the threshold
    plateau: tuple[float, float]  # the run of thresholds it was chosen from
    level: float  # the best F1 that holds over a whole window of +-SHIFT
    best_f1: float  # the best F1 of any single threshold
    tolerance: float  # the plateau's F1 (with ``prefer``, over its whole window) is at least level - tolerance
    warning: str | None = None  # the choice or its plateau is at an end of the searched thresholds
    prefer: float | None = None  # the choice is the nearest to this in its plateau (else its middle)


def best_threshold(
    recs: Sequence[RecordingScores], scores: Sequence[Scores], options: EventOptions,
    thresholds: Sequence[float] = THRESHOLDS, *, prefer: float | None = None,
) -> Choice:  # fmt: skip
    """The event threshold for these scores, by the rule of :func:`choose_threshold` (``prefer`` goes to it)."""
    return choose_threshold(thresholds, sweep(recs, scores, options, thresholds), prefer=prefer)


def choose_threshold(
    thresholds: Sequence[float], counts: Sequence[EventCounts], *, prefer: float | None = None
) -> Choice:
    """A threshold on a plateau of event F1 over ``thresholds``, not its best single point.

    Scores of recordings not in the set sit a little higher or lower (another level, another room), so what
    counts is an F1 that holds over a window of +-:data:`SHIFT`: the plateau's level is the best F1 that a whole
    window keeps (a spike next to a cliff, where a shift loses a whole class of events, does not set it), and
    F1 differences within one standard error (:func:`tolerance`) of it are noise.

    With ``prefer`` (``calibrate``: the default threshold), the choice is the threshold nearest to it whose whole
    window keeps F1 within that tolerance of the level (:func:`nearest_within`): a setting moves only as far as
    the labels clearly ask, and never to within SHIFT of a cliff. Without (``train``: a new head's scale is its
    own), the plateau is the widest run of thresholds whose F1 is within the tolerance of the level and that
    holds such a window; the choice is its middle (the lower threshold of two middles).
    """
    grid = [float(t) for t in thresholds]
    f1 = np.array([c.f1 for c in counts], dtype=np.float64)
    robust = robust_f1(grid, f1)
    level = float(robust.max())
    tol = tolerance(level, counts[0].labeled)
    if prefer is None:
        run = widest_run(f1 >= level - tol - 1e-9, f1, anchors=robust >= level - tol - 1e-9)
    else:
        run = nearest_within(robust, tol, centre=int(np.abs(np.asarray(grid) - prefer).argmin()))
    chosen = "the middle" if prefer is None else f"the nearest to {prefer:g}"
    warning = bound_warning("threshold", grid, run, plateau=True, chosen=chosen, top=OUT_OF_RANGE, bottom=OUT_OF_RANGE)
    return Choice(threshold=grid[run.index], counts=counts[run.index], plateau=(grid[run.first], grid[run.last]),
                  level=level, best_f1=float(f1.max()), tolerance=tol, warning=warning, prefer=prefer)  # fmt: skip


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
            "clear": self.options.clear,
            "events": counts_dict(c),
            "timesteps": {
                "count": self.timesteps,
                "accuracy": rounded(self.accuracy),
                "roc_auc": rounded(self.roc_auc),
            },
            "labels": {k or "(none)": {"found": f, "labeled": n} for k, (f, n) in self.label_recall.items()},
            "recordings": {
                r.stream_id: {
                    **counts_dict(r.counts),
                    "accuracy": rounded(r.accuracy),
                    "roc_auc": rounded(r.roc_auc),
                    "detected": [[round(a, 3), round(b, 3)] for a, b in r.detected],
                }
                for r in self.recordings
            },
            "event_pr_curve": [
                {"threshold": t, "precision": rounded(p), "recall": rounded(r)} for t, p, r in self.event_curve
            ],
        }


def counts_dict(c: EventCounts) -> dict[str, Any]:
    """Event counts as a report shows them: precision, recall, F1, the counts and the mean IoU."""
    return {"precision": rounded(c.precision), "recall": rounded(c.recall), "f1": rounded(c.f1), "matched": c.matched,
            "detected": c.detected, "labeled": c.labeled, "mean_iou": rounded(c.mean_iou)}  # fmt: skip


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
