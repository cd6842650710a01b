"""How good a detector is: event-level precision, recall and F1, timestep accuracy and ROC-AUC.

* Events: a detected interval matches a labeled one of the same recording when their intersection over union
  (IoU) is at least ``min_iou`` (0.3); pairs are taken greedily, highest IoU first, each interval used once.
  Precision = matched / detected, recall = matched / labeled, F1 their harmonic mean. With nothing detected
  precision is 1 (no false alarm); with nothing labeled recall is 1 (nothing missed).
* Timesteps: a timestep is positive when its midpoint lies in a labeled interval; it is predicted positive
  when its score reaches the threshold. ROC-AUC is the probability that a random positive timestep scores
  above a random negative one (ties count half); None when one class is absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Interval = tuple[float, float]
MIN_IOU = 0.3


def iou(a: Interval, b: Interval) -> float:
    inter = min(a[1], b[1]) - max(a[0], b[0])
    if inter <= 0:
        return 0.0
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def match_events(detected: Sequence[Interval], labeled: Sequence[Interval], min_iou: float = MIN_IOU) -> list[
    tuple[int, int, float]
]:  # fmt: skip
    """Greedy one-to-one matching, highest IoU first: ``(detected index, labeled index, IoU)`` per match."""
    pairs = sorted(
        ((iou(d, g), i, j) for i, d in enumerate(detected) for j, g in enumerate(labeled)),
        key=lambda p: (-p[0], p[1], p[2]),
    )
    used_d: set[int] = set()
    used_g: set[int] = set()
    matches = []
    for value, i, j in pairs:
        if value < min_iou - 1e-12:
            break
        if i not in used_d and j not in used_g:
            used_d.add(i)
            used_g.add(j)
            matches.append((i, j, value))
    return matches


@dataclass(frozen=True, slots=True)
class EventCounts:
    """Matched, detected and labeled events, summed over recordings with ``+``."""

    matched: int = 0
    detected: int = 0
    labeled: int = 0
    iou_sum: float = 0.0  # over the matches

    @classmethod
    def of(cls, detected: Sequence[Interval], labeled: Sequence[Interval], min_iou: float = MIN_IOU) -> EventCounts:
        matches = match_events(detected, labeled, min_iou)
        return cls(len(matches), len(detected), len(labeled), sum(m[2] for m in matches))

    def __add__(self, other: EventCounts) -> EventCounts:
        return EventCounts(
            self.matched + other.matched, self.detected + other.detected, self.labeled + other.labeled,
            self.iou_sum + other.iou_sum,
        )  # fmt: skip

    @property
    def precision(self) -> float:
        return self.matched / self.detected if self.detected else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.labeled if self.labeled else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    @property
    def mean_iou(self) -> float:
        return self.iou_sum / self.matched if self.matched else 0.0


def timestep_labels(t: npt.ArrayLike, hop: float, intervals: Sequence[Interval]) -> npt.NDArray[np.bool_]:
    """Whether each timestep ``[t, t + hop)`` has its midpoint inside one of ``intervals``."""
    middle = np.asarray(t, dtype=np.float64) + hop / 2
    positive = np.zeros(middle.shape, dtype=bool)
    for start, end in intervals:
        positive |= (middle >= start) & (middle < end)
    return positive


def accuracy(predicted: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    p, y = np.asarray(predicted, dtype=bool), np.asarray(labels, dtype=bool)
    return float(np.mean(p == y)) if p.size else 0.0


def roc_auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float | None:
    """Area under the ROC curve from ranks (Mann-Whitney U, ties averaged); None when a class is missing."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average rank (1-based) within each group of equal scores
    starts = np.flatnonzero(np.concatenate([[True], sorted_s[1:] != sorted_s[:-1]]))
    ends = np.append(starts[1:], len(s))
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + 1 + b) / 2
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_recall_curve(
    scores: npt.ArrayLike, labels: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Timestep precision and recall at each distinct score taken as the threshold (descending): (p, r, t)."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.flatnonzero(np.append(s[1:] != s[:-1], True))  # the last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / max(int(y.sum()), 1)
    return precision, recall.astype(np.float64), s[last]
