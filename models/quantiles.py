"""Quantiles over the windows the models keep, each column of ``(B, W, C)`` over the entries of its row that
count, as ``torch.nanquantile`` gives them (linear interpolation) but cheaper.

``torch.nanquantile`` sorts every column whole. A high quantile needs only the top few entries
(:func:`upper_quantile`: a partial sort, ``topk``), and the lower ones here need only the entries that count
(:func:`lower_quantiles`: the window's newest entries, gathered, then sorted). At live batch sizes these two
were a quarter of the model's time (py-spy, 32 live 720p streams).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def upper_quantile(window: Tensor, valid: Tensor, q: float) -> Tensor:
    """The ``q`` quantile (``q`` >= 0.5) of each column of ``window (B, W, C)`` over its entries where ``valid``
    (``(B, W, C)``, or ``(B, W, 1)``: alike for all of a row's columns): ``(B, C)``, NaN where there are none."""
    n = valid.sum(dim=1).expand(window.shape[0], window.shape[2])  # (B, C)
    k = min(window.shape[1], math.ceil((1 - q) * (window.shape[1] - 1)) + 2)
    # invalid entries sink below every valid one; the quantile's entries are among the top k
    top = torch.where(valid, window, -torch.inf).transpose(1, 2).topk(k, dim=2).values  # (B, C, k)
    return _interpolate(top, n, q, descending=True)


def lower_quantiles(window: Tensor, valid: Tensor, qs: Tensor) -> Tensor:
    """The quantiles ``qs (Q,)`` of each column of ``window (B, W, C)`` over its entries where ``valid`` (as for
    :func:`upper_quantile`): ``(Q, B, C)``, NaN where there are none. Sorts whole columns: for quantiles of any
    height, best on a window gathered down to the entries that can count."""
    n = valid.sum(dim=1).expand(window.shape[0], window.shape[2])
    ranked = torch.where(valid, window, torch.inf).sort(dim=1).values.transpose(1, 2)  # (B, C, W)
    return torch.stack([_interpolate(ranked, n, float(q), descending=False) for q in qs.tolist()])


def _interpolate(ranked: Tensor, n: Tensor, q: float, *, descending: bool) -> Tensor:
    """The ``q`` quantile of each column's ``n (B, C)`` entries, given as the first entries of ``ranked (B, C, k)``
    (ascending, or descending: the largest first), as ``torch.quantile`` computes it (``lerp`` at rank ``q * (n -
    1)``)."""
    ranks = (n - 1).clamp(min=0).to(ranked.dtype) * q  # (B, C): the quantile's position in ascending order
    below, above = ranks.long(), ranks.ceil().long()
    weights = ranks - below.to(ranks.dtype)
    if descending:
        below, above = n - 1 - below, n - 1 - above
    last = ranked.shape[2] - 1

    def at(rank: Tensor) -> Tensor:  # (B, C) -> the values at that rank (B, C)
        return ranked.gather(2, rank.clamp(0, last).unsqueeze(2)).squeeze(2)

    value = torch.lerp(at(below), at(above), weights)
    return torch.where(n > 0, value, torch.nan)
