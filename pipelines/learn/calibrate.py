"""``streamer calibrate``: alpha, beta and the threshold for the best event-level F1 on labeled recordings.

S = alpha * S_v + beta * S_a is compared with a threshold, so only the ratio of alpha to beta and the threshold
relative to alpha + beta matter: calibration keeps alpha + beta = 1 (S stays in [0, 1]) and tries every
``alpha`` of :data:`WEIGHTS` with every threshold of :data:`~pipelines.learn.evaluate.THRESHOLDS`, detecting
events with the run-time rules (``min_gap``, ``min_duration``) and matching them to the labels. Of the settings
with the best F1 it keeps the one with the widest range of thresholds reaching it (the most robust), then the
best-aligned events, then the most balanced weights; the threshold is the middle of that range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.config import EventOptions
from pipelines.learn.evaluate import Choice, Scores, best_threshold, fused_scores
from pipelines.learn.extract import RecordingScores
from pipelines.learn.metrics import roc_auc

WEIGHTS = np.round(np.linspace(0.0, 1.0, 21), 2)  # alpha; beta = 1 - alpha


@dataclass(frozen=True)
class Calibration:
    alpha: float
    beta: float
    choice: Choice
    roc_auc: float | None  # timesteps, S at the chosen weights
    roc_auc_video: float | None  # S_v alone
    roc_auc_audio: float | None  # S_a alone
    f1_by_alpha: dict[float, float]  # the best event F1 each alpha reaches

    @property
    def threshold(self) -> float:
        return self.choice.threshold


def calibrate(recs: Sequence[RecordingScores], options: EventOptions) -> Calibration:
    if not recs:
        raise ValueError("no recordings to calibrate on")
    best: tuple[tuple[float, ...], float, Choice, list[Scores]] | None = None
    f1_by_alpha: dict[float, float] = {}
    for alpha in WEIGHTS:
        scores = [fused_scores(r, float(alpha), 1.0 - float(alpha)) for r in recs]
        choice = best_threshold(recs, scores, options)
        f1_by_alpha[float(alpha)] = choice.counts.f1
        low, high = choice.plateau
        key = (round(choice.counts.f1, 9), round(high - low, 6), round(choice.counts.mean_iou, 6), -abs(alpha - 0.5))
        if best is None or key > best[0]:
            best = (key, float(alpha), choice, scores)
    assert best is not None
    _, alpha, choice, chosen = best
    labels = np.concatenate([r.labels for r in recs])
    s = np.concatenate(chosen)
    return Calibration(
        alpha=alpha,
        beta=round(1.0 - alpha, 2),
        choice=choice,
        roc_auc=roc_auc(s, labels),
        roc_auc_video=roc_auc(np.concatenate([r.values["s_v"] for r in recs]), labels),
        roc_auc_audio=roc_auc(np.concatenate([r.values["s_a"] for r in recs]), labels),
        f1_by_alpha=f1_by_alpha,
    )
