"""The fusion model: S(t) = alpha * S_v(t) + beta * S_a(t) for a batch of timesteps across streams.

An absent modality (no video, no audio track, or digital silence) contributes nothing: ``S = alpha * m_v * S_v +
beta * m_a * S_a`` with ``m_v``, ``m_a`` = 1 when the modality is present at t, else 0, so a stream's threshold
means the same whatever it carries. With the defaults (alpha = beta = 0.5, threshold 0.3) a clear sound alone or
clear motion alone (S_a or S_v over 0.6) makes an event, both together a stronger one.

**Alignment** (:class:`models.align.Alignment`): evidence of one modality within the last ``av_window`` seconds
(0.2: a hop or two, and the A/V offset of real cameras) counts for the other while that one is active, so a sound
and a movement that start together score as co-occurring whatever their phase against the timestep grid. The S_v
and S_a that S is computed from (and that are published) are the aligned ones.

Streams get a *slot* (:meth:`FusionModel.add_stream`), which indexes their adaptive state and their weights on
the device; slots are released and reused while running. One call scores a whole batch: no loop over streams.

A *provisional* timestep (:meth:`streamer.sync.TimestepAssembler.provisional`: the open timestep so far) is
scored against its stream's state after the batch's other timesteps and teaches it nothing (its rows of every
state tensor are put back): the same model decides whether an onset is clear before its timestep closes. Where an
encoder keeps state that cannot be put back (not a :class:`~models.slots.SlotStateMixin`), provisional rows get
NaN scores (never an event).

Scoring updates the streams' state in place, and adding a stream may replace every state tensor by a larger one
(:meth:`FusionModel._grow`): a model is not safe to use from two threads at once. A model confined to a thread
(:meth:`FusionModel.confine`, as :class:`pipelines.stages.inference.ModelRunner` does with its model thread)
refuses to be touched from any other, so such a race is an error, not a lost update.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from streamer.media import Timestep
from streamer.options import SourceOptions
from streamer.settings import default_of
from streamer.sync import SyncOptions

from .align import Alignment
from .audio import AudioActivity
from .batch import ModelInput, pack
from .slots import Rounds, SlotStateMixin
from .video import VideoActivity


def fuse(s_v: Tensor, s_a: Tensor, has_v: Tensor, has_a: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    """The fusion rule above; every argument ``(B,)``."""
    return alpha * has_v.to(alpha.dtype) * s_v + beta * has_a.to(beta.dtype) * s_a


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
        """Everything on the host, in one device-to-host copy: ``(B,)`` arrays, and ``(B, K)`` for a feature of
        several columns (the video's ``unusual`` cells)."""
        names = ["s", "s_v", "s_a", "has_v", "has_a", *self.features]
        values = [self.s, self.s_v, self.s_a, self.has_v, self.has_a, *self.features.values()]
        columns = [v.float().reshape(v.shape[0], -1) for v in values]
        flat: np.ndarray = torch.cat(columns, dim=1).cpu().numpy()
        out: dict[str, np.ndarray] = {}
        at = 0
        for name, value, column in zip(names, values, columns, strict=True):
            width = column.shape[1]
            out[name] = flat[:, at] if value.dim() == 1 else flat[:, at : at + width]
            at += width
        return out


class FusionModel(nn.Module):
    """Video and audio activity and their fusion, batched across streams, on any device.

    ``video`` / ``audio``: encoders replacing :class:`VideoActivity` / :class:`AudioActivity` (see
    :mod:`models.plugins`). ``tau``: the memory of the adaptive baselines in seconds (the video's usual
    activity is its last ``2 tau`` seconds, the audio background its last ``0.8 tau``). ``head``: a learned
    fusion head (:mod:`models.heads`) that computes S from the modalities' scores and features instead of the
    weighted sum (the streams' alpha and beta then play no part).
    """

    def __init__(
        self,
        *,
        luma_size: tuple[int, int] = default_of(SourceOptions, "luma_size"),
        sample_rate: int = default_of(SyncOptions, "sample_rate"),
        hop: float = default_of(SyncOptions, "hop"),
        context: float = default_of(SyncOptions, "context"),
        tau: float,
        av_window: float = 0.2,
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
        self.video = video or VideoActivity(height, width, hop=hop, window=2 * tau, capacity=capacity)
        self.audio = audio or AudioActivity(sample_rate, hop=hop, window=0.8 * tau, capacity=capacity)
        if av_window < 0:
            raise ValueError(f"av_window must be >= 0 seconds, got {av_window}")
        self.align = Alignment(round(av_window / hop + 1e-9), capacity)
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
        self._owner: int | None = None  # the thread the streams' state is confined to (None: not confined)

    @property
    def device(self) -> torch.device:
        return torch.device(self.alpha.device)

    def confine(self) -> None:
        """From now on only the calling thread may touch the streams' state (slots, weights, what they learned,
        scoring): a call from any other raises ``RuntimeError`` instead of racing with a batch that updates the
        state in place."""
        self._owner = threading.get_ident()

    def _owned(self) -> None:
        if self._owner is not None and threading.get_ident() != self._owner:
            raise RuntimeError(
                f"the model's stream state was touched from thread {threading.current_thread().name!r}; it is "
                "confined to its model thread (queue the call there: pipelines.stages.inference.ModelRunner)"
            )

    # -- slots ------------------------------------------------------------------------------------------------

    def add_stream(self, alpha: float, beta: float) -> int:
        """Assign a slot to a new stream (fresh state) and return it; may grow every state tensor (twice the
        capacity) when no slot is free."""
        self._owned()
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got {alpha} and {beta}")
        if not self._free:
            self._grow(2 * self._capacity)
        slot = self._free.pop()
        for module in self._stateful():
            module.reset_slots(torch.tensor([slot]), settings=True)
        self.set_weights(slot, alpha, beta)
        return slot

    def release(self, slot: int) -> None:
        self._owned()
        if not 0 <= slot < self._capacity or slot in self._free:
            raise ValueError(f"slot {slot} is not in use")
        self.set_weights(slot, 0.0, 0.0)
        self._free.append(slot)

    def reset_slots(self, slots: Sequence[int]) -> None:
        """Forget what these streams taught the model (previous frame, baselines, warm-up): they start afresh, as
        after a reconnect. Their weights and masks stay."""
        self._owned()
        index = torch.tensor(list(slots), dtype=torch.long)
        for module in self._stateful():
            module.reset_slots(index)

    def export_state(self, slot: int) -> dict[str, Tensor]:
        """What a stream has learned (previous frame, baselines, warm-up, recent scores), CPU tensors by name:
        carried over when the stream moves to another model, process or machine (:meth:`import_state`)."""
        self._owned()
        return {
            f"{prefix}.{name}": value
            for prefix, module in self._stateful_named()
            for name, value in module.export_slot(slot).items()
        }

    def import_state(self, slot: int, state: dict[str, Tensor]) -> None:
        """Give a stream's slot the state :meth:`export_state` took (from a model with the same settings);
        ``ValueError`` when it does not fit."""
        self._owned()
        for prefix, module in self._stateful_named():
            part = {key.split(".", 1)[1]: value for key, value in state.items() if key.split(".", 1)[0] == prefix}
            module.import_slot(slot, part)

    def set_mask(self, slot: int, ignore: Tensor | None) -> None:
        """The picture the stream's video activity ignores: ``ignore (H, W)`` bool at ``luma_size``, True where
        masked (never counts as change, never learned); None: none. A custom video encoder without ``set_mask``
        refuses a mask (``ValueError``)."""
        self._owned()
        set_mask = getattr(self.video, "set_mask", None)
        if set_mask is None:
            if ignore is None:
                return
            raise ValueError(f"the video encoder {type(self.video).__name__} takes no mask")
        width, height = self.luma_size
        if ignore is not None and tuple(ignore.shape) != (height, width):
            raise ValueError(f"a mask must be {height}x{width} (the analysis picture), got {tuple(ignore.shape)}")
        set_mask(slot, ignore)

    def set_weights(self, slot: int, alpha: float, beta: float) -> None:
        self._owned()
        self.alpha[slot] = alpha
        self.beta[slot] = beta

    def _stateful(self) -> list[SlotStateMixin]:
        return [module for _, module in self._stateful_named()]

    def _stateful_named(self) -> list[tuple[str, SlotStateMixin]]:
        named = (("video", self.video), ("audio", self.audio), ("align", self.align))
        return [(name, m) for name, m in named if isinstance(m, SlotStateMixin)]

    def _grow(self, capacity: int) -> None:
        """Every state tensor replaced by one of ``capacity`` rows holding the old rows: a batch being scored on
        another thread at the same time would write into the old tensors and lose its updates (hence
        :meth:`confine`; :meth:`add_stream`, its one caller, checks)."""
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
        # Several timesteps of one stream: their state updates go in order.
        if hasattr(self.video, "forward_rounds") and hasattr(self.audio, "forward_rounds"):
            # The built-in encoders take the whole batch in one pass, each timestep seeing its stream's state as
            # the stream's earlier timesteps left it.
            return self._score_rounds(batch, Rounds(batch.slots, batch.rounds, batch.n_rounds))
        parts: list[tuple[Tensor, ModelOutput]] = []
        for r in range(batch.n_rounds):  # other encoders: one round per occurrence
            index = (batch.rounds == r).nonzero().squeeze(1)
            out = self._score(
                batch.frames[index], batch.valid[index], batch.audio[index], batch.audio_present[index],
                batch.slots[index],
            )  # fmt: skip
            parts.append((index, out))
        return _scatter(parts, batch.batch_size)

    def _score_rounds(self, batch: ModelInput, rounds: Rounds) -> ModelOutput:
        with torch.autocast(self.device.type, enabled=self.autocast and self.device.type == "cuda"):
            s_v, f_v = _as_score(cast(Any, self.video).forward_rounds(self._frames(batch.frames), batch.valid, rounds))
            s_a, f_a = _as_score(cast(Any, self.audio).forward_rounds(batch.audio, batch.audio_present, rounds))
        return self._output(s_v, f_v, s_a, f_a, batch.valid, batch.audio_present, rounds)

    def _score(self, frames: Tensor, valid: Tensor, audio: Tensor, present: Tensor, slots: Tensor) -> ModelOutput:
        with torch.autocast(self.device.type, enabled=self.autocast and self.device.type == "cuda"):
            s_v, f_v = _as_score(self.video(self._frames(frames), valid, slots))
            s_a, f_a = _as_score(self.audio(audio, present, slots))
        return self._output(s_v, f_v, s_a, f_a, valid, present, Rounds.distinct(slots))

    def _frames(self, frames: Tensor) -> Tensor:
        """The batch's uint8 luma as the video encoder takes it: as it is where it says so (``takes_bytes``), else
        float 0-255."""
        return frames if getattr(self.video, "takes_bytes", False) else frames.float()

    def _output(
        self, s_v: Tensor, f_v: dict[str, Tensor], s_a: Tensor, f_a: dict[str, Tensor], valid: Tensor,
        present: Tensor, rounds: Rounds,
    ) -> ModelOutput:  # fmt: skip
        # an encoder may say a modality is absent although data came (digital silence): its "present" feature
        has_v = valid.any(dim=1) & f_v.pop("present", torch.ones_like(present)).bool()
        has_a = present & f_a.pop("present", torch.ones_like(present)).bool()
        s_v, s_a = self.align.forward_rounds(s_v.float(), s_a.float(), has_v, has_a, rounds)
        features = {f"video_{k}": v.float() for k, v in f_v.items()} | {f"audio_{k}": v.float() for k, v in f_a.items()}
        if self.head is not None:
            columns = {"s_v": s_v, "s_a": s_a, "has_v": has_v, "has_a": has_a, **features}
            s = cast(Any, self.head).score_columns(columns).float()
        else:
            s = fuse(s_v, s_a, has_v, has_a, self.alpha[rounds.slots], self.beta[rounds.slots])
        return ModelOutput(s=s, s_v=s_v, s_a=s_a, has_v=has_v, has_a=has_a, features=features)

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
        self._owned()
        early = [i for i, ts in enumerate(timesteps) if ts.provisional]
        if early:
            return self._with_provisional(timesteps, slots, early)
        parts = _reset_parts(timesteps, slots) if any(ts.reset for ts in timesteps) else [(0, len(timesteps))]
        if len(parts) == 1:
            return self._score_part(timesteps, slots)
        results = [self._score_part(timesteps[a:b], slots[a:b]) for a, b in parts]
        return {name: np.concatenate([r[name] for r in results]) for name in results[0]}

    @property
    def can_peek(self) -> bool:
        """Whether every module's per-stream state can be put back after a provisional scoring."""
        return all(isinstance(m, SlotStateMixin) for m in (self.video, self.audio))

    def _with_provisional(
        self, timesteps: Sequence[Timestep], slots: Sequence[int], early: list[int]
    ) -> dict[str, np.ndarray]:
        """The timesteps in order, then the provisional ones on the state that left, which is then put back.

        A provisional timestep whose stream has nothing else in the batch is scored in the same call as the
        batch's timesteps (its rows put back after it): one call instead of two, about a quarter less time for a
        batch that is half provisional (``benchmarks/README.md``, "where live capacity is bound"); the others, on
        the state their stream's timesteps in the batch leave, in a second call."""
        final = [i for i in range(len(timesteps)) if not timesteps[i].provisional]
        parts: list[tuple[list[int], dict[str, np.ndarray]]] = []
        if self.can_peek:
            uses = Counter(slots)
            alone = [i for i in early if uses[slots[i]] == 1]
            joint = [] if any(timesteps[i].reset for i in final) else alone  # a reset's batch is scored in parts
            if joint:
                order = sorted(final + joint)
                parts.append((order, self._peek([timesteps[i] for i in order], [slots[i] for i in order],
                                                [slots[i] for i in joint])))  # fmt: skip
                joined = set(joint)
                final, early = [], [i for i in early if i not in joined]
        if final:
            parts.append((final, self.score([timesteps[i] for i in final], [slots[i] for i in final])))
        if self.can_peek and early:
            chosen = [slots[i] for i in early]
            parts.append((early, self._peek([timesteps[i] for i in early], chosen, chosen)))
        out: dict[str, np.ndarray] = {}
        for index_of, result in parts:
            for name, values in result.items():
                if name not in out:
                    out[name] = np.full((len(timesteps), *values.shape[1:]), np.nan, values.dtype)
                out[name][index_of] = values
        if not self.can_peek and "s" not in out:  # nothing but provisional rows, and no way to score them
            out = {name: np.full(len(timesteps), np.nan, np.float32) for name in ("s", "s_v", "s_a")}
            out |= {"has_v": np.zeros(len(timesteps), np.float32), "has_a": np.zeros(len(timesteps), np.float32)}
        return out

    def _peek(
        self, timesteps: Sequence[Timestep], slots: Sequence[int], provisional: Sequence[int]
    ) -> dict[str, np.ndarray]:
        """Score ``timesteps``; what the ``provisional`` slots learned from it is put back."""
        index = torch.tensor(list(provisional), dtype=torch.long)
        saved = [(module, module.save_rows(index)) for module in self._stateful()]
        try:
            return self._score_part(timesteps, slots)
        finally:
            for module, rows in saved:
                module.restore_rows(index, rows)

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
