"""Cross-modal alignment: evidence of one modality counts for the other within a short association window.

A sound and a movement that start together rarely land in the same timestep: the onsets fall anywhere in the
grid, frame differencing sees a movement as it starts, a sound needs some milliseconds in a timestep to stand
out, and cameras add A/V offsets of tens of milliseconds. So per stream the scores of the last ``steps``
timesteps are kept, and

    S_v'(t) = max(S_v(t), min(max(S_v(t - steps .. t - 1)), S_a(t)))

(and the same with the modalities swapped): recent video evidence counts, up to the strength of the sound heard
now, while audio is active, and the other way round. A modality alone is unchanged (its event neither starts
earlier nor ends later); an A+V onset split over two timesteps scores as co-occurring in the second one, one hop
after the first evidence at the latest.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .slots import Rounds, SlotStateMixin


class Alignment(SlotStateMixin):
    """Input ``s_v``, ``s_a``, ``has_v``, ``has_a`` and ``slots`` (distinct), each ``(B,)``; returns the aligned
    ``(s_v, s_a)``. ``steps``: how many earlier timesteps count (``round(av_window / hop)``; 0 turns it off)."""

    _slot_buffers = ("recent_v", "recent_a")
    recent_v: Tensor  # (capacity, steps) the last timesteps' own S_v (0 where absent), newest last
    recent_a: Tensor  # (capacity, steps)

    def __init__(self, steps: int = 2, capacity: int = 8) -> None:
        super().__init__()
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.steps = steps
        self.register_buffer("recent_v", torch.zeros(capacity, max(steps, 1)))
        self.register_buffer("recent_a", torch.zeros(capacity, max(steps, 1)))

    def forward(self, s_v: Tensor, s_a: Tensor, has_v: Tensor, has_a: Tensor, slots: Tensor) -> tuple[Tensor, Tensor]:
        return self.forward_rounds(s_v, s_a, has_v, has_a, Rounds.distinct(slots))

    def forward_rounds(
        self, s_v: Tensor, s_a: Tensor, has_v: Tensor, has_a: Tensor, rounds: Rounds
    ) -> tuple[Tensor, Tensor]:
        """Like :meth:`forward`, but slots may repeat (``rounds``, a stream's timesteps in order)."""
        if self.steps == 0:
            return s_v, s_a
        s_v = torch.where(has_v, s_v, 0.0)
        s_a = torch.where(has_a, s_a, 0.0)
        recent_v = rounds.shift(self.recent_v, s_v)
        recent_a = rounds.shift(self.recent_a, s_a)
        aligned_v = torch.where(has_v, torch.maximum(s_v, torch.minimum(recent_v.amax(dim=1), s_a)), s_v)
        aligned_a = torch.where(has_a, torch.maximum(s_a, torch.minimum(recent_a.amax(dim=1), s_v)), s_a)
        return aligned_v, aligned_a
