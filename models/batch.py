"""Timesteps of many streams packed into one batch, moved to the device in one copy.

:func:`pack` lays every tensor of the batch out in one byte buffer (pinned when the target is CUDA), so moving
a batch is a single host-to-device copy (``non_blocking``); on the device the tensors are views of that buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from streamer.media import Timestep


@dataclass(frozen=True)
class ModelInput:
    """One batch. ``B`` timesteps (of distinct or repeated streams), ``F`` frames at most per timestep.

    ``frames (B, F, H, W)`` uint8 luma; ``valid (B, F)`` bool (a prefix of each row); ``audio (B, N)`` float32
    windows (context + hop samples); ``audio_present (B,)`` bool; ``slots (B,)`` int64 stream slots;
    ``rounds (B,)`` int64: how many earlier timesteps of the same slot are in the batch (0 for the first), so
    a stream's timesteps update its state in order; ``n_rounds`` their maximum + 1.
    """

    frames: Tensor
    valid: Tensor
    audio: Tensor
    audio_present: Tensor
    slots: Tensor
    rounds: Tensor
    n_rounds: int

    @property
    def batch_size(self) -> int:
        return int(self.slots.shape[0])


def occurrence_rounds(slots: Sequence[int]) -> np.ndarray:
    """For each position, how many times its slot occurred before it: [3, 5, 3, 3] -> [0, 0, 1, 2]."""
    seen: dict[int, int] = {}
    rounds = np.empty(len(slots), np.int64)
    for i, slot in enumerate(slots):  # a pass over the batch's items to index them, no per-stream work
        rounds[i] = seen.get(slot, 0)
        seen[slot] = rounds[i] + 1
    return rounds


def _align(offset: int, to: int = 16) -> int:
    return -(-offset // to) * to


def pack(
    timesteps: Sequence[Timestep],
    slots: Sequence[int],
    *,
    luma_size: tuple[int, int],
    window: int,
    max_frames: int = 8,
    device: torch.device | None = None,
) -> ModelInput:
    """Build a batch on ``device`` (default CPU). ``window``: audio samples per timestep (context + hop).

    Timesteps with more than ``max_frames`` frames keep their last ``max_frames``; shorter audio windows (the
    last timestep of a file) are zero-padded at the end.
    """
    if len(timesteps) != len(slots) or not timesteps:
        raise ValueError("need as many slots as timesteps, and at least one")
    width, height = luma_size
    batch = len(timesteps)
    count = max(1, min(max_frames, max(len(ts.frames) for ts in timesteps)))
    layout: dict[str, tuple[int, int]] = {}  # name -> (offset, nbytes)
    offset = 0
    for name, nbytes in (
        ("frames", batch * count * height * width),
        ("valid", batch * count),
        ("audio", batch * window * 4),
        ("audio_present", batch),
        ("slots", batch * 8),
        ("rounds", batch * 8),
    ):
        offset = _align(offset)
        layout[name] = (offset, nbytes)
        offset += nbytes
    cuda = device is not None and device.type == "cuda"
    host = torch.zeros(offset, dtype=torch.uint8, pin_memory=cuda)
    raw = host.numpy()

    def view(name: str, dtype: type[np.generic], shape: tuple[int, ...]) -> np.ndarray:
        start, nbytes = layout[name]
        return raw[start : start + nbytes].view(dtype).reshape(shape)

    frames = view("frames", np.uint8, (batch, count, height, width))
    valid = view("valid", np.bool_, (batch, count))
    audio = view("audio", np.float32, (batch, window))
    present = view("audio_present", np.bool_, (batch,))
    for i, ts in enumerate(timesteps):
        for j, frame in enumerate(ts.frames[-count:]):
            if frame.luma.shape != (height, width):
                raise ValueError(f"stream '{ts.stream_id}': luma {frame.luma.shape[::-1]} is not {luma_size}")
            frames[i, j] = frame.luma
            valid[i, j] = True
        if not ts.audio_missing:
            samples = ts.audio_window[-window:] if len(ts.audio_window) >= window else ts.audio_window
            audio[i, : len(samples)] = samples
            present[i] = True
    rounds = occurrence_rounds(slots)
    view("slots", np.int64, (batch,))[:] = slots
    view("rounds", np.int64, (batch,))[:] = rounds
    moved = host.to(device, non_blocking=True) if device is not None and device.type != "cpu" else host

    def tensor(name: str, dtype: torch.dtype, shape: tuple[int, ...]) -> Tensor:
        start, nbytes = layout[name]
        return moved[start : start + nbytes].view(dtype).view(shape)

    return ModelInput(
        frames=tensor("frames", torch.uint8, (batch, count, height, width)),
        valid=tensor("valid", torch.bool, (batch, count)),
        audio=tensor("audio", torch.float32, (batch, window)),
        audio_present=tensor("audio_present", torch.bool, (batch,)),
        slots=tensor("slots", torch.int64, (batch,)),
        rounds=tensor("rounds", torch.int64, (batch,)),
        n_rounds=int(rounds.max()) + 1,
    )
