"""``streamer train``: fit a fusion head (:mod:`models.heads`) to labeled recordings, on the device.

The recordings are split into training and validation sets (whole recordings, so neighbouring timesteps of one
recording never sit on both sides; ``val_fraction``, seeded; the options and their defaults:
:class:`~pipelines.learn.options.TrainOptions`). The head learns to tell the timesteps inside
labeled events from the others: a binary cross-entropy on all training timesteps at once (positives weighted by
the class ratio), Adam, and early stopping when the validation loss has not improved for ``patience`` epochs
(the best weights are kept). The event threshold is then chosen on the validation recordings (on all of them when
those hold no event) by the plateau rule calibration uses (:func:`~pipelines.learn.evaluate.choose_threshold`), but
with no setting to keep (a new head's scale is its own), the middle of the plateau of good event F1, not its best
single point; a choice whose plateau reaches an end of the searched thresholds is logged as a warning, with a head
whose scores crowd near 0 or 1 the best may lie beyond it.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.device import resolve_device
from models.heads import INPUTS, Checkpoint, FusionHead, make_head
from pipelines.config import EventOptions
from pipelines.learn.evaluate import best_threshold, evaluate, head_scores
from pipelines.learn.extract import RecordingScores
from pipelines.learn.options import TrainOptions

log = logging.getLogger("streamer")


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Checkpoint
    train: list[str]  # recordings
    validation: list[str]
    epochs: int  # run before stopping
    best_epoch: int
    train_loss: float
    val_loss: float
    warnings: tuple[str, ...] = ()  # about the threshold's choice


def split(recs: Sequence[RecordingScores], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of the training and validation recordings: at least one of each."""
    if len(recs) < 2:
        raise ValueError("training needs at least 2 recordings (one or more are kept for validation)")
    order = list(range(len(recs)))
    random.Random(seed).shuffle(order)
    n_val = min(len(recs) - 1, max(1, round(fraction * len(recs))))
    return sorted(order[n_val:]), sorted(order[:n_val])


def _tensors(recs: Sequence[RecordingScores], device: torch.device) -> tuple[Tensor, Tensor]:
    x = np.concatenate([r.table(INPUTS) for r in recs])
    y = np.concatenate([r.labels for r in recs]).astype(np.float32)
    return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)


def train(
    recs: Sequence[RecordingScores],
    options: TrainOptions,
    events: EventOptions,
    *,
    extraction: dict[str, Any],
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> TrainResult:
    device = resolve_device(options.device)
    train_i, val_i = split(recs, options.val_fraction, options.seed)
    train_recs, val_recs = [recs[i] for i in train_i], [recs[i] for i in val_i]
    x, y = _tensors(train_recs, device)
    vx, vy = _tensors(val_recs, device)
    if not y.any() or y.all():
        raise ValueError("the training recordings need timesteps both inside and outside labeled events")
    torch.manual_seed(options.seed)
    head: FusionHead = make_head(options.fusion).to(device)
    head.fit_scaling(x)
    positives = float(y.mean())
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((1 - positives) / positives, device=device))
    optimizer = torch.optim.Adam(head.parameters(), lr=options.lr)
    best_val, best_epoch, best_state = float("inf"), 0, copy.deepcopy(head.state_dict())
    train_loss = val_loss = float("nan")
    epoch = 0
    for epoch in range(1, options.epochs + 1):
        head.train()
        optimizer.zero_grad()
        loss = loss_fn(head.logits(x), y)
        loss.backward()
        optimizer.step()
        head.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(head.logits(vx), vy))
        train_loss = float(loss.detach())
        if on_epoch is not None:
            on_epoch(epoch, train_loss, val_loss)
        if val_loss < best_val - 1e-6:
            best_val, best_epoch, best_state = val_loss, epoch, copy.deepcopy(head.state_dict())
        elif epoch - best_epoch >= options.patience:
            break
    head.load_state_dict(best_state)
    head = head.cpu().eval()
    val_scores = head_scores(head, val_recs, "cpu")
    if any(r.recording.events for r in val_recs):
        choice = best_threshold(val_recs, val_scores, events)
    else:  # nothing to find in validation: every threshold would do, choose on all the recordings
        choice = best_threshold(recs, head_scores(head, recs, "cpu"), events)
    if choice.warning is not None:
        log.warning("train: %s", choice.warning)
    validation = evaluate(val_recs, val_scores, replace(events, threshold=choice.threshold))
    metrics = {"validation": {k: validation.as_dict()[k] for k in ("events", "timesteps")}, "best_epoch": best_epoch}
    checkpoint = Checkpoint(head, choice.threshold, extraction, metrics)
    return TrainResult(
        checkpoint=checkpoint,
        train=[r.recording.stream_id for r in train_recs],
        validation=[r.recording.stream_id for r in val_recs],
        epochs=epoch,
        best_epoch=best_epoch,
        train_loss=train_loss,
        val_loss=best_val,
        warnings=(choice.warning,) if choice.warning is not None else (),
    )
