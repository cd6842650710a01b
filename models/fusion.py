"""The fusion model: S(t) = alpha * S_v(t) + beta * S_a(t) for a batch of timesteps across streams.

Missing modality rule: the weights of the modalities present are scaled up so they add to ``alpha + beta``::

    S = (alpha * m_v * S_v + beta * m_a * S_a) * (alpha + beta) / (alpha * m_v + beta * m_a)

with ``m_v``, ``m_a`` = 1 when the modality is present at t, else 0; S = 0 when no weighted modality is present.
So with the defaults (0.5, 0.5) an audio-only stream scores S = S_a, while ``alpha=1, beta=0`` on a stream whose
video stalled scores 0 rather than listening to audio it was told to ignore.

Streams get a *slot* (:meth:`FusionModel.add_stream`), which indexes their adaptive state and their weights on
the device; slots are released and reused while running. One call scores a whole batch: no loop over streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from streamer.media import Timestep

from .audio import AudioActivity
from .batch import ModelInput, pack
from .slots import SlotStateMixin
from .video import VideoActivity


def fuse(s_v: Tensor, s_a: Tensor, has_v: Tensor, has_a: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    """The fusion rule above; every argument ``(B,)``."""
    w_v = alpha * has_v.to(alpha.dtype)
    w_a = beta * has_a.to(beta.dtype)
    present = w_v + w_a
    fused = (w_v * s_v + w_a * s_a) * (alpha + beta) / present.clamp(min=1e-12)
    return torch.where(present > 0, fused, torch.zeros_like(fused))


@dataclass(frozen=True)
class ModelOutput:
    """Per timestep of the batch, all ``(B,)``: the fused score, each modality's score and presence, features."""

    s: Tensor
    s_v: Tensor
    s_a: Tensor
    has_v: Tensor
    has_a: Tensor
    features: dict[str, Tensor]

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Everything on the host, in one device-to-host copy."""
        names = ["s", "s_v", "s_a", "has_v", "has_a", *self.features]
        values = [self.s, self.s_v, self.s_a, self.has_v, self.has_a, *self.features.values()]
        stacked: np.ndarray = torch.stack([v.float() for v in values]).cpu().numpy()
        return dict(zip(names, stacked, strict=True))


class FusionModel(nn.Module):
    """Video and audio activity and their fusion, batched across streams, on any device.

    ``video`` / ``audio``: encoders replacing :class:`VideoActivity` / :class:`AudioActivity` (see
    :mod:`models.plugins`). ``tau``: the adaptive baselines' time constant in seconds. ``head``: a learned
    fusion head (:mod:`models.heads`) that computes S from the modalities' scores and features instead of the
    weighted sum (the streams' alpha and beta then play no part).
    """

    def __init__(
        self,
        *,
        luma_size: tuple[int, int] = (160, 90),
        sample_rate: int = 16000,
        hop: float = 0.1,
        context: float = 0.1,
        tau: float = 10.0,
        video: nn.Module | None = None,
        audio: nn.Module | None = None,
        max_frames: int = 8,
        capacity: int = 8,
        autocast: bool = False,
        head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        width, height = luma_size
        self.luma_size = luma_size
        self.hop_samples = round(hop * sample_rate)
        self.window = round(context * sample_rate) + self.hop_samples
        self.max_frames = max_frames
        self.autocast = autocast
        self.video = video or VideoActivity(height, width, hop=hop, tau=tau, capacity=capacity)
        self.audio = audio or AudioActivity(sample_rate, self.hop_samples, hop=hop, tau=tau, capacity=capacity)
        needed = getattr(self.audio, "min_window", 0)
        if self.window < needed:
            raise ValueError(
                f"hop + context hold {self.window / sample_rate * 1000:g} ms of audio; the audio model needs at "
                f"least {needed / sample_rate * 1000:g} ms (one FFT window and one frame hop of the spectrogram)"
            )
        self.head = head
        self.alpha: Tensor
        self.beta: Tensor
        self.register_buffer("alpha", torch.zeros(capacity))
        self.register_buffer("beta", torch.zeros(capacity))
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._capacity = capacity

    @property
    def device(self) -> torch.device:
        return torch.device(self.alpha.device)

    # -- slots ------------------------------------------------------------------------------------------------

    def add_stream(self, alpha: float = 0.5, beta: float = 0.5) -> int:
        """Assign a slot to a new stream (fresh state) and return it."""
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got {alpha} and {beta}")
        if not self._free:
            self._grow(2 * self._capacity)
        slot = self._free.pop()
        for module in self._stateful():
            module.reset_slots(torch.tensor([slot]))
        self.set_weights(slot, alpha, beta)
        return slot

    def release(self, slot: int) -> None:
        if not 0 <= slot < self._capacity or slot in self._free:
            raise ValueError(f"slot {slot} is not in use")
        self.set_weights(slot, 0.0, 0.0)
        self._free.append(slot)

    def reset_slots(self, slots: Sequence[int]) -> None:
        """Forget what these streams taught the model (previous frame, baselines, warm-up): they start afresh, as
        after a reconnect. Their weights stay."""
        index = torch.tensor(list(slots), dtype=torch.long)
        for module in self._stateful():
            module.reset_slots(index)

    def set_weights(self, slot: int, alpha: float, beta: float) -> None:
        self.alpha[slot] = alpha
        self.beta[slot] = beta

    def _stateful(self) -> list[SlotStateMixin]:
        return [m for m in (self.video, self.audio) if isinstance(m, SlotStateMixin)]

    def _grow(self, capacity: int) -> None:
        for module in self._stateful():
            module.ensure_capacity(capacity)
        for name in ("alpha", "beta"):
            old = getattr(self, name)
            grown = old.new_zeros(capacity)
            grown[: old.shape[0]] = old
            setattr(self, name, grown)
        self._free = list(range(capacity - 1, self._capacity - 1, -1)) + self._free
        self._capacity = capacity

    # -- scoring ----------------------------------------------------------------------------------------------

    def forward(self, batch: ModelInput) -> ModelOutput:
        if batch.n_rounds == 1:
            return self._score(batch.frames, batch.valid, batch.audio, batch.audio_present, batch.slots)
        # Several timesteps of one stream: their state updates go in order, one round per occurrence.
        rounds = [(batch.rounds == r).nonzero().squeeze(1) for r in range(batch.n_rounds)]
        if hasattr(self.video, "forward_rounds") and hasattr(self.audio, "forward_rounds"):
            # The built-in encoders measure the whole batch in one call and update their state round by round.
            return self._score_rounds(batch, rounds)
        parts: list[tuple[Tensor, ModelOutput]] = []
        for index in rounds:
            out = self._score(
                batch.frames[index], batch.valid[index], batch.audio[index], batch.audio_present[index],
                batch.slots[index],
            )  # fmt: skip
            parts.append((index, out))
        return _scatter(parts, batch.batch_size)

    def _score_rounds(self, batch: ModelInput, rounds: list[Tensor]) -> ModelOutput:
        with torch.autocast(self.device.type, enabled=self.autocast and self.device.type == "cuda"):
            s_v, f_v = _as_score(
                cast(Any, self.video).forward_rounds(batch.frames.float(), batch.valid, batch.slots, rounds)
            )
            s_a, f_a = _as_score(
                cast(Any, self.audio).forward_rounds(batch.audio, batch.audio_present, batch.slots, rounds)
            )
        return self._output(s_v, f_v, s_a, f_a, batch.valid, batch.audio_present, batch.slots)

    def _score(self, frames: Tensor, valid: Tensor, audio: Tensor, present: Tensor, slots: Tensor) -> ModelOutput:
        with torch.autocast(self.device.type, enabled=self.autocast and self.device.type == "cuda"):
            s_v, f_v = _as_score(self.video(frames.float(), valid, slots))
            s_a, f_a = _as_score(self.audio(audio, present, slots))
        return self._output(s_v, f_v, s_a, f_a, valid, present, slots)

    def _output(
        self, s_v: Tensor, f_v: dict[str, Tensor], s_a: Tensor, f_a: dict[str, Tensor], valid: Tensor,
        present: Tensor, slots: Tensor,
    ) -> ModelOutput:  # fmt: skip
        s_v, s_a = s_v.float(), s_a.float()
        has_v = valid.any(dim=1)
        features = {f"video_{k}": v.float() for k, v in f_v.items()} | {f"audio_{k}": v.float() for k, v in f_a.items()}
        if self.head is not None:
            columns = {"s_v": s_v, "s_a": s_a, "has_v": has_v, "has_a": present, **features}
            s = cast(Any, self.head).score_columns(columns).float()
        else:
            s = fuse(s_v, s_a, has_v, present, self.alpha[slots], self.beta[slots])
        return ModelOutput(s=s, s_v=s_v, s_a=s_a, has_v=has_v, has_a=present, features=features)

    def pack(self, timesteps: Sequence[Timestep], slots: Sequence[int]) -> ModelInput:
        return pack(
            timesteps, slots, luma_size=self.luma_size, window=self.window, max_frames=self.max_frames,
            device=self.device,
        )  # fmt: skip

    @torch.inference_mode()
    def score(self, timesteps: Sequence[Timestep], slots: Sequence[int]) -> dict[str, np.ndarray]:
        """Pack, move (one copy), score and bring back (one copy): arrays of ``len(timesteps)`` per name.

        A timestep with ``reset`` (the first after a reconnect) resets its stream's state before it is scored;
        when timesteps of that stream from before the reset are in the batch too, the batch is scored in parts.
        """
        parts = _reset_parts(timesteps, slots) if any(ts.reset for ts in timesteps) else [(0, len(timesteps))]
        if len(parts) == 1:
            return self._score_part(timesteps, slots)
        results = [self._score_part(timesteps[a:b], slots[a:b]) for a, b in parts]
        return {name: np.concatenate([r[name] for r in results]) for name in results[0]}

    def _score_part(self, timesteps: Sequence[Timestep], slots: Sequence[int]) -> dict[str, np.ndarray]:
        resets = [slot for ts, slot in zip(timesteps, slots, strict=True) if ts.reset]
        if resets:
            self.reset_slots(resets)
        output: ModelOutput = self(self.pack(timesteps, slots))
        return output.to_numpy()


def _reset_parts(timesteps: Sequence[Timestep], slots: Sequence[int]) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of the batch such that a timestep with ``reset`` is the first of its slot in its
    range (so resetting the slot before scoring the range is in order)."""
    parts: list[tuple[int, int]] = []
    start = 0
    seen: set[int] = set()
    for i, (ts, slot) in enumerate(zip(timesteps, slots, strict=True)):
        if ts.reset and slot in seen:
            parts.append((start, i))
            start, seen = i, set()
        seen.add(slot)
    parts.append((start, len(timesteps)))
    return parts


def _as_score(result: Any) -> tuple[Tensor, dict[str, Tensor]]:
    if isinstance(result, Tensor):
        return result, {}
    score, features = result
    return score, dict(features)


def _scatter(parts: list[tuple[Tensor, ModelOutput]], size: int) -> ModelOutput:
    first = parts[0][1]

    def gather(get: Any) -> Tensor:
        sample: Tensor = get(first)
        out = sample.new_zeros(size)
        for index, part in parts:
            out[index] = get(part)
        return out

    return ModelOutput(
        s=gather(lambda o: o.s),
        s_v=gather(lambda o: o.s_v),
        s_a=gather(lambda o: o.s_a),
        has_v=gather(lambda o: o.has_v),
        has_a=gather(lambda o: o.has_a),
        features={name: gather(lambda o, n=name: o.features[n]) for name in first.features},
    )
