"""Per-stream adaptive state kept on the device, in tensors indexed by a stream *slot*.

A module that keeps state per stream registers its state tensors as buffers whose first dimension is the slot,
and derives from :class:`SlotStateMixin`: the model grows every such buffer together (``ensure_capacity``) and
resets a stream's rows when its slot is (re)assigned (``reset_slots``), without a Python loop over streams.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn


class SlotStateMixin(nn.Module):
    """Buffers listed in ``_slot_buffers`` have shape ``(capacity, ...)``; ``_slot_defaults`` their reset value."""

    _slot_buffers: ClassVar[tuple[str, ...]] = ()
    _slot_defaults: ClassVar[dict[str, float]] = {}

    @property
    def capacity(self) -> int:
        return int(getattr(self, self._slot_buffers[0]).shape[0]) if self._slot_buffers else 0

    def ensure_capacity(self, capacity: int) -> None:
        """Grow every slot buffer to at least ``capacity`` rows (new rows reset), keeping existing rows."""
        old = self.capacity
        if capacity <= old:
            return
        for name in self._slot_buffers:
            buffer: Tensor = getattr(self, name)
            grown = buffer.new_full((capacity, *buffer.shape[1:]), self._slot_defaults.get(name, 0.0))
            grown[:old] = buffer
            setattr(self, name, grown)

    def reset_slots(self, slots: Tensor) -> None:
        """Forget what the streams in ``slots`` (long tensor, any device) taught the state."""
        index = slots.to(self._device_of_state())
        for name in self._slot_buffers:
            getattr(self, name)[index] = self._slot_defaults.get(name, 0.0)

    def _device_of_state(self) -> torch.device:
        return torch.device(getattr(self, self._slot_buffers[0]).device) if self._slot_buffers else torch.device("cpu")


def push_ring(ring: Tensor, count: Tensor, value: Tensor, keep: Tensor) -> Tensor:
    """A copy of the rings ``ring (B, W, ...)`` with ``value (B, ...)`` written at slot ``count % W`` of each row
    where ``keep (B,)``: the newest of a row's last ``W`` measurements replaces its oldest."""
    rows = torch.arange(ring.shape[0], device=ring.device)
    at = (count.long() % ring.shape[1]).to(ring.device)
    out = ring.clone()
    out[rows, at] = torch.where(keep.view(-1, *([1] * (value.dim() - 1))), value, ring[rows, at])
    return out
