"""``streamer calibrate``: alpha, beta and the threshold for a good event-level F1 on labeled recordings.

S = alpha * S_v + beta * S_a is compared with a threshold, so only the ratio of alpha to beta and the threshold
relative to alpha + beta matter: calibration keeps alpha + beta = 1 (S stays in [0, 1]) and tries every
``alpha`` of :data:`WEIGHTS` with every threshold of :data:`~pipelines.learn.evaluate.THRESHOLDS`, detecting
events with the run-time rules (``min_gap``, ``min_duration``) and matching them to the labels.

The best single setting is not the goal: on real recordings it sits at a cliff (just under the S that one sense
alone reaches, where a shift of the scores loses whole classes of events), and it fits this set, not the next
recordings. Instead, by the one-standard-error rule along both axes (:func:`~pipelines.learn.evaluate.nearest_within`:
of the settings the labels cannot tell from the best, the one nearest the design default, so that a setting moves
only as far as the labels clearly ask, and the same labels give the same answer whatever is configured now):

* for each alpha, the threshold (:func:`~pipelines.learn.evaluate.choose_threshold`): each threshold is rated by
  the lowest F1 within +-``SHIFT`` of it, the best rating is that alpha's level, and the threshold is the one
  nearest the default threshold (:data:`DEFAULT_THRESHOLD`) whose rating is within one standard error
  (:func:`~pipelines.learn.evaluate.tolerance`) of the level: never within ``SHIFT`` of a cliff;
* alpha: of the weights whose level is within one standard error of the best level, the one nearest balanced
  weights that is not at the edge of its run next to a worse weight. (Their middle drifted towards leaving a
  sense out when the set held few events of it.)

A choice at an end of what was searched is said (``warnings``, logged too): a threshold whose plateau reaches an
end may have better ones beyond it, and alpha 0 or 1 leaves one sense out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.config import EventOptions
from pipelines.learn.evaluate import (
    THRESHOLDS,
    Choice,
    Scores,
    best_threshold,
    bound_warning,
    fused_scores,
    nearest_within,
    tolerance,
)
from pipelines.learn.extract import RecordingScores
from pipelines.learn.metrics import roc_auc
from streamer.settings import default_of

log = logging.getLogger("streamer")

WEIGHTS = np.round(np.linspace(0.0, 1.0, 21), 2)  # alpha; beta = 1 - alpha
# what calibration moves from only as far as the labels clearly ask (with alpha = beta = 0.5, between nothing and
# one sense alone)
DEFAULT_THRESHOLD: float = default_of(EventOptions, "threshold")


@dataclass(frozen=True)
class Calibration:
    alpha: float
    beta: float
    choice: Choice  # the threshold at this alpha
    alpha_range: tuple[float, float]  # the run of weights within alpha_tolerance of the best that holds alpha
    alpha_tolerance: float  # what "within" meant for it
    roc_auc: float | None  # timesteps, S at the chosen weights
    roc_auc_video: float | None  # S_v alone
    roc_auc_audio: float | None  # S_a alone
    f1_by_alpha: dict[float, float]  # the best event F1 each alpha reaches at a single threshold
    warnings: tuple[str, ...]  # the choice sits at an end of what was searched

    @property
    def threshold(self) -> float:
        return self.choice.threshold


def calibrate(recs: Sequence[RecordingScores], options: EventOptions) -> Calibration:
    if not recs:
        raise ValueError("no recordings to calibrate on")
    weights = [float(a) for a in WEIGHTS]
    choices: list[Choice] = []
    scores_by_alpha: list[list[Scores]] = []
    for alpha in weights:
        scores = [fused_scores(r, alpha, 1.0 - alpha) for r in recs]
        scores_by_alpha.append(scores)
        choices.append(best_threshold(recs, scores, options, THRESHOLDS, prefer=DEFAULT_THRESHOLD))
    levels = [c.level for c in choices]
    alpha_tolerance = tolerance(max(levels), choices[0].counts.labeled)
    run = nearest_within(levels, alpha_tolerance, centre=weights.index(0.5), inside=True)
    alpha, choice = weights[run.index], choices[run.index]
    warning = bound_warning("alpha", weights, run, plateau=False, top="S_a is not used (beta 0)",
                            bottom="S_v is not used (alpha 0)")  # fmt: skip
    warnings = tuple(w for w in (choice.warning, warning) if w is not None)
    for line in warnings:  # on stderr too: ``calibrate DATA > tuned.toml`` keeps only the commented copy
        log.warning("calibrate: %s", line)
    labels = np.concatenate([r.labels for r in recs])
    s = np.concatenate(scores_by_alpha[run.index])
    return Calibration(
        alpha=alpha,
        beta=round(1.0 - alpha, 2),
        choice=choice,
        alpha_range=(weights[run.first], weights[run.last]),
        alpha_tolerance=alpha_tolerance,
        roc_auc=roc_auc(s, labels),
        roc_auc_video=roc_auc(np.concatenate([r.values["s_v"] for r in recs]), labels),
        roc_auc_audio=roc_auc(np.concatenate([r.values["s_a"] for r in recs]), labels),
        f1_by_alpha={a: c.best_f1 for a, c in zip(weights, choices, strict=True)},
        warnings=warnings,
    )
