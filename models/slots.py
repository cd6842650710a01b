"""Per-stream adaptive state kept on the device, in tensors indexed by a stream *slot*.

A module that keeps state per stream registers its state tensors as buffers whose first dimension is the slot,
and derives from :class:`SlotStateMixin`: the model grows every such buffer together (``ensure_capacity``) and
resets a stream's rows when its slot is (re)assigned (``reset_slots``), without a Python loop over streams.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import torch
from torch import Tensor, nn


class SlotStateMixin(nn.Module):
    """Buffers listed in ``_slot_buffers`` have shape ``(capacity, ...)``; ``_slot_defaults`` their reset value.

    Those also in ``_slot_settings`` hold what the stream was given (a mask), not what it learned: they are reset
    only when the slot is given to a stream, not when the stream starts afresh (a reconnect), and they are not
    part of its exported state (the stream's own settings go with it)."""

    _slot_buffers: ClassVar[tuple[str, ...]] = ()
    _slot_defaults: ClassVar[dict[str, float]] = {}
    _slot_settings: ClassVar[tuple[str, ...]] = ()

    @property
    def capacity(self) -> int:
        return int(getattr(self, self._slot_buffers[0]).shape[0]) if self._slot_buffers else 0

    def ensure_capacity(self, capacity: int) -> None:
        """Grow every slot buffer to at least ``capacity`` rows (new rows reset), keeping existing rows.

        Each buffer is *replaced* by a larger copy: an update written into the old one meanwhile (a batch scored on
        another thread) would be lost, so the model calls this only on the thread its state is confined to."""
        old = self.capacity
        if capacity <= old:
            return
        for name in self._slot_buffers:
            buffer: Tensor = getattr(self, name)
            grown = buffer.new_full((capacity, *buffer.shape[1:]), self._slot_defaults.get(name, 0.0))
            grown[:old] = buffer
            setattr(self, name, grown)

    def reset_slots(self, slots: Tensor, *, settings: bool = False) -> None:
        """Forget what the streams in ``slots`` (long tensor, any device) taught the state; with ``settings``
        (the slots are given to new streams) their settings too."""
        index = slots.to(self._device_of_state())
        for name in self._slot_buffers if settings else self._learned():
            getattr(self, name)[index] = self._slot_defaults.get(name, 0.0)

    def export_slot(self, slot: int) -> dict[str, Tensor]:
        """One stream's learned state: a copy of its row of every slot buffer but the settings, on the CPU."""
        return {name: getattr(self, name)[slot].detach().cpu().clone() for name in self._learned()}

    def import_slot(self, slot: int, state: dict[str, Tensor]) -> None:
        """Restore a stream's state from :meth:`export_slot` (of a model with the same settings)."""
        for name in self._learned():
            buffer: Tensor = getattr(self, name)
            value = state.get(name)
            if value is None or tuple(value.shape) != tuple(buffer.shape[1:]):
                shape = None if value is None else tuple(value.shape)
                raise ValueError(f"{type(self).__name__}.{name}: expected shape {tuple(buffer.shape[1:])}, got {shape}")
            buffer[slot] = value.to(buffer.device, buffer.dtype)

    def save_rows(self, slots: Tensor) -> list[Tensor]:
        """A copy of what the streams in ``slots`` learned so far, for :meth:`restore_rows`."""
        index = slots.to(self._device_of_state())
        return [getattr(self, name)[index].clone() for name in self._learned()]

    def restore_rows(self, slots: Tensor, saved: list[Tensor]) -> None:
        """Put back what :meth:`save_rows` copied: a provisional scoring leaves nothing learned."""
        index = slots.to(self._device_of_state())
        for name, rows in zip(self._learned(), saved, strict=True):
            getattr(self, name)[index] = rows

    def _learned(self) -> tuple[str, ...]:
        return tuple(name for name in self._slot_buffers if name not in self._slot_settings)

    def _device_of_state(self) -> torch.device:
        return torch.device(getattr(self, self._slot_buffers[0]).device) if self._slot_buffers else torch.device("cpu")


class Rounds:
    """Where each row of a batch stands among its stream's rows, for state updates in order without a loop.

    ``slots (B,)`` the rows' slots (they may repeat), ``order (B,)`` how many earlier rows of the same slot the
    batch has (0 for a slot's first), ``n`` their maximum + 1. ``unique (U,)`` the batch's distinct slots,
    ``row_of (B,)`` each row's index into ``unique``, ``rows (U,)`` how many rows each slot has.

    A stream's rows are its consecutive timesteps: row ``r`` must see the state as the rows before it left it.
    The helpers lay each slot's rows out as a grid ``(U, n, ...)`` and read every row's state at once from the
    slot's state followed by its rows' contributions.
    """

    def __init__(self, slots: Tensor, order: Tensor, n: int) -> None:
        self.slots, self.order, self.n = slots, order, n
        if n == 1:  # distinct slots (the live case): no sort
            self.unique, self.row_of = slots, torch.arange(slots.shape[0], device=slots.device)
        else:
            self.unique, self.row_of = torch.unique(slots, return_inverse=True)

    @functools.cached_property
    def rows(self) -> Tensor:
        return self.grid(torch.ones_like(self.slots, dtype=torch.long), 0).sum(dim=1)

    @classmethod
    def distinct(cls, slots: Tensor) -> Rounds:
        return cls(slots, torch.zeros_like(slots), 1)

    @property
    def size(self) -> int:
        return int(self.unique.shape[0])

    def grid(self, values: Tensor, fill: float | bool) -> Tensor:
        """Rows ``(B, ...)`` laid out per slot and order ``(U, n, ...)``; cells without a row hold ``fill``."""
        out = values.new_full((self.size, self.n, *values.shape[1:]), fill)
        out[self.row_of, self.order] = values
        return out

    def shift(self, recent: Tensor, values: Tensor) -> Tensor:
        """Windows of the last ``S`` values, newest last: each row's ``(B, S)`` as the slot's ``recent (capacity,
        S)`` followed by its earlier rows' ``values (B,)``; ``recent`` is updated in place with every row."""
        if self.n == 1:
            windows = recent[self.slots]
            recent[self.slots] = torch.cat([windows[:, 1:], values.to(recent.dtype).unsqueeze(1)], dim=1)
            return windows
        steps = recent.shape[1]
        j = torch.arange(steps, device=recent.device)
        combined = torch.cat([recent[self.unique], self.grid(values.to(recent.dtype), 0.0)], dim=1)  # (U, S + n)
        windows = combined[self.row_of.unsqueeze(1), self.order.unsqueeze(1) + j]
        everyone = torch.arange(self.size, device=recent.device).unsqueeze(1)
        recent[self.unique] = combined[everyone, self.rows.unsqueeze(1) + j]
        return windows

    def ages(self, before: Tensor, width: int) -> Tensor:
        """How many kept measurements ago each entry of the windows :meth:`push` returned was kept ``(B, W)``
        (0: the newest; entries never written are older than any): the windows are in ring order for distinct
        slots, oldest first otherwise. ``before``: :meth:`push`'s counts."""
        j = torch.arange(width, device=before.device)
        if self.n == 1:
            return (before.long().unsqueeze(1) - 1 - j) % width
        return (width - 1 - j).expand(before.shape[0], width)

    def newest(self, before: Tensor, width: int, count: int) -> Tensor:
        """Where each row's ``count`` newest entries lie in the windows :meth:`push` returned ``(B, count)``,
        newest first: the entries whose :meth:`ages` are below ``count``."""
        age = torch.arange(count, device=before.device)
        if self.n == 1:
            return (before.long().unsqueeze(1) - 1 - age) % width
        return (width - 1 - age).expand(before.shape[0], count)

    def push(
        self, count: Tensor, keep: Tensor, *rings: tuple[Tensor, Tensor], windows: bool = True
    ) -> tuple[Tensor, list[Tensor]]:
        """Rings of each slot's last ``W`` kept measurements (``ring (capacity, W, ...)``, written at ``count %
        W``: the newest replaces the oldest), given each row's ``values (B, ...)`` and ``keep (B,)``.

        Returns each row's count of kept measurements before it ``(B,)`` and, per ring, each row's window
        ``(B, W, ...)`` as it stands before the row; the rings and ``count (capacity,)`` are updated in place
        with every kept row. Without ``windows``, for distinct slots, no window is gathered (an empty list: the
        caller reads the few it needs from the rings before the push, :meth:`window_of`); slots that repeat need
        them in order, so they are given anyway.
        """
        out: list[Tensor] = []
        if self.n == 1:  # distinct slots: each ring as it is (their order does not matter to its statistics)
            slots, before = self.slots, count[self.slots]
            for ring, values in rings:
                at = before.long() % ring.shape[1]
                if windows:
                    rows = ring[slots]
                    out.append(rows)
                    old = rows[self.row_of, at]
                else:
                    old = ring[slots, at]
                kept = torch.where(keep.view(-1, *([1] * (values.dim() - 1))), values.to(ring.dtype), old)
                ring[slots, at] = kept
            count[slots] = before + keep.to(count.dtype)
            return before, out
        device = count.device
        base = count[self.unique].long()  # (U,)
        kept = self.grid(keep.long(), 0)  # (U, n)
        before_grid = kept.cumsum(dim=1) - kept
        before = before_grid[self.row_of, self.order]  # (B,)
        total = kept.sum(dim=1)  # (U,)
        everyone = torch.arange(self.size, device=device).unsqueeze(1)
        # a row that keeps nothing writes into a spare last column
        at = torch.where(keep, before, torch.full_like(before, self.n))
        for ring, values in rings:
            width = ring.shape[1]
            j = torch.arange(width, device=device)
            oldest_first = ring[self.unique.unsqueeze(1), (base.unsqueeze(1) + j) % width]  # (U, W, ...)
            fresh = ring.new_full((self.size, self.n + 1, *ring.shape[2:]), float("nan"))
            fresh[self.row_of, at] = values.to(ring.dtype)
            combined = torch.cat([oldest_first, fresh[:, : self.n]], dim=1)  # (U, W + n, ...)
            out.append(combined[self.row_of.unsqueeze(1), before.unsqueeze(1) + j])
            ring[self.unique.unsqueeze(1), (base + total).unsqueeze(1).add(j) % width] = combined[
                everyone, total.unsqueeze(1) + j
            ]
        count[self.unique] = (base + total).to(count.dtype)
        return base[self.row_of] + before, out
