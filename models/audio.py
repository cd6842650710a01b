"""S_a: audio activity from log-mel energy and spectral flux, against a per-stream, per-band noise floor.

Each timestep's audio window (look-back context + the timestep's samples) goes through torchaudio's
``MelSpectrogram`` (25 ms windows, 10 ms hop, 40 bands); the frames that fall in the timestep itself are used:

* ``level`` (dB, per band): mean log-mel power over the timestep. The stream's noise floor is, per band, a running
  mean ``floor`` and mean absolute deviation ``dev`` of the level (time constant ``tau`` seconds; within ``fall``
  seconds when the level drops more than ``k * dev`` below it), so steady noise (a fan, rain) becomes floor
  and a burst hardly moves it (it rises ten times slower while the score is high);
* ``excess = max over bands of (level - floor - k * dev)`` (dB): how far the loudest band stands out;
* ``flux``: spectral flux, the mean over frames of the summed positive band-to-band increase (dB), which marks
  onsets; ``flux_excess`` is its excess over its own running mean and deviation, the same way;
* ``S_a = 1 - exp(-(relu(excess - margin) + flux_weight * relu(flux_excess)) / scale)``.
  With ``k`` 3, ``margin`` 4 dB and ``scale`` 4 dB a sound 20 dB over a steady floor (band deviation ~1.5 dB)
  gives about 0.94, 30 dB 0.999; the max over 40 noisy bands of steady noise stays under ``k * dev + margin``.

Warm-up: the first ``warmup`` seconds of a stream's audio (5 timesteps at 100 ms) only teach the floor (S_a = 0):
per band, the floor starts at the median of their levels and ``dev`` at their robust spread
(:func:`models.slots.warmup_baseline`), and the flux's baseline likewise. So neither a first timestep that is
partly digital silence (audio starting mid-timestep, a live stream joined mid-packet), which would leave the
floor far below the real noise, nor a bang as the stream starts (a live stream joined during a sound), which
would inflate ``dev`` by tens of dB and leave the stream deaf for many seconds, sets the floor.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torchaudio
from torch import Tensor

from .slots import SlotStateMixin, warmup_baseline

_EPS_POWER = 1e-10  # -100 dB: what digital silence reads as


class AudioActivity(SlotStateMixin):
    """Input ``audio (B, N)`` float (context + hop samples), ``present (B,)`` bool, ``slots (B,)`` long (distinct).

    ``hop_samples`` is the length of the timestep's own part at the end of each window. Returns ``score (B,)``
    and raw features ``excess`` (dB), ``level`` (dB, mean over bands), ``flux`` (dB), each ``(B,)``.
    """

    _slot_buffers = ("floor", "dev", "flux_mu", "flux_dev", "count", "level_history", "flux_history")
    # prior spreads (dB); steady noise measured 0.74 dB (band levels) and 2.4-2.7 dB (flux) mean deviation
    _slot_defaults: ClassVar[dict[str, float]] = {"dev": 2.0, "flux_dev": 3.0}
    floor: Tensor  # (capacity, n_mels) dB
    dev: Tensor  # (capacity, n_mels) dB
    flux_mu: Tensor  # (capacity,) dB
    flux_dev: Tensor  # (capacity,) dB
    count: Tensor  # (capacity,) float: timesteps with audio learned so far
    level_history: Tensor  # (capacity, warm-up steps, n_mels) dB: the warm-up's levels
    flux_history: Tensor  # (capacity, warm-up steps) dB: the warm-up's fluxes

    def __init__(
        self,
        sample_rate: int = 16000,
        hop_samples: int = 1600,
        *,
        n_mels: int = 40,
        hop: float = 0.1,
        tau: float = 10.0,
        fall: float = 1.0,
        k: float = 3.0,
        margin: float = 4.0,
        scale: float = 4.0,
        flux_weight: float = 0.5,
        warmup: float = 0.5,
        capacity: int = 8,
    ) -> None:
        super().__init__()
        if not (hop > 0 and tau > 0 and fall > 0 and scale > 0 and k >= 0 and margin >= 0 and flux_weight >= 0):
            raise ValueError("hop, tau, fall, scale must be > 0; k, margin and flux_weight >= 0")
        self.n_fft = round(0.025 * sample_rate)
        self.frame_hop = round(0.010 * sample_rate)
        self.min_window = self.n_fft + self.frame_hop  # samples of audio a timestep's window needs (context + hop)
        self.hop_samples = hop_samples
        self.k, self.margin, self.scale, self.flux_weight = k, margin, scale, flux_weight
        self.warmup_steps = max(1, round(warmup / hop))
        self.rise = min(1.0, hop / tau)
        self.fall = min(1.0, hop / fall)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=self.n_fft, hop_length=self.frame_hop, n_mels=n_mels, center=False
        )
        self.register_buffer("floor", torch.zeros(capacity, n_mels))
        self.register_buffer("dev", torch.full((capacity, n_mels), 2.0))
        self.register_buffer("flux_mu", torch.zeros(capacity))
        self.register_buffer("flux_dev", torch.full((capacity,), self._slot_defaults["flux_dev"]))
        self.register_buffer("count", torch.zeros(capacity))
        self.register_buffer("level_history", torch.zeros(capacity, self.warmup_steps, n_mels))
        self.register_buffer("flux_history", torch.zeros(capacity, self.warmup_steps))

    def forward(self, audio: Tensor, present: Tensor, slots: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        level, flux = self._measure(audio)
        return self._decide(level, flux, present, slots)

    def forward_rounds(
        self, audio: Tensor, present: Tensor, slots: Tensor, rounds: list[Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Like :meth:`forward`, but slots may repeat: ``rounds[r]`` indexes each slot's ``r``-th timestep.
        The log-mel spectrogram runs once over the whole batch; only the noise floor goes round by round."""
        level, flux = self._measure(audio)
        score = torch.zeros(slots.shape[0], device=slots.device)
        excess = torch.zeros_like(score)
        for index in rounds:
            score[index], features = self._decide(level[index], flux[index], present[index], slots[index])
            excess[index] = features["excess"]
        return score, {"excess": excess, "level": level.mean(dim=1), "flux": flux}

    def _measure(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """Per row: mean log-mel level ``(B, n_mels)`` dB over the timestep's own frames, spectral flux ``(B,)``."""
        if audio.shape[1] < self.min_window:
            raise ValueError(f"audio windows need >= {self.min_window} samples, got {audio.shape[1]}")
        logmel = 10.0 * torch.log10(self.mel(audio) + _EPS_POWER)  # (B, n_mels, T)
        # the frames that end inside the timestep's own samples (and the one before each, for the flux)
        own = max(1, min(logmel.shape[2] - 1, round(self.hop_samples / self.frame_hop)))
        level = logmel[:, :, -own:].mean(dim=2)  # (B, n_mels)
        flux = torch.relu(logmel[:, :, -own:] - logmel[:, :, -own - 1 : -1]).sum(dim=1).mean(dim=1)  # (B,)
        return level, flux

    def _decide(self, level: Tensor, flux: Tensor, present: Tensor, slots: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Score against the stream's noise floor and learn (``slots`` distinct)."""
        floor, dev, count = self.floor[slots], self.dev[slots], self.count[slots]
        warm = count >= self.warmup_steps
        flux_mu, flux_dev = self.flux_mu[slots], self.flux_dev[slots]
        excess = (level - floor - self.k * dev).amax(dim=1)
        flux_excess = flux - flux_mu - self.k * flux_dev
        activity = torch.relu(excess - self.margin) + self.flux_weight * torch.relu(flux_excess)
        score = torch.where(present & warm, 1.0 - torch.exp(-activity / self.scale), 0.0)

        # Learn. Warm-up: remember the levels; with the last, their medians are the floor. Then running means,
        # falling fast when the noise drops and rising ten times slower while the stream is active.
        filling = present & ~warm
        ready = filling & (count + 1 >= self.warmup_steps)
        levels, level_median, level_spread = warmup_baseline(self.level_history[slots], count, level, filling, dev)
        fluxes, flux_median, flux_spread = warmup_baseline(self.flux_history[slots], count, flux, filling, flux_dev)
        slow = (1.0 - 0.9 * score).unsqueeze(1)
        rate = torch.where(level < floor - self.k * dev, self.fall, self.rise * slow)
        w, r = warm.unsqueeze(1), ready.unsqueeze(1)
        new_floor = torch.where(w, floor + rate * (level - floor), torch.where(r, level_median, floor))
        new_dev = torch.where(w, dev + rate * ((level - floor).abs() - dev), torch.where(r, level_spread, dev))
        flux_falling = flux < flux_mu - self.k * flux_dev  # as the floor: falls fast, its spread not growing
        flux_rate = torch.where(flux_falling, self.fall, self.rise * slow.squeeze(1))
        new_flux_mu = torch.where(
            warm, flux_mu + flux_rate * (flux - flux_mu), torch.where(ready, flux_median, flux_mu)
        )
        moved_flux_dev = flux_dev + flux_rate * ((flux - flux_mu).abs() - flux_dev)
        new_flux_dev = torch.where(
            warm,
            torch.where(flux_falling, torch.minimum(moved_flux_dev, flux_dev), moved_flux_dev),
            torch.where(ready, flux_spread, flux_dev),
        )
        keep = present.unsqueeze(1)
        self.floor[slots] = torch.where(keep, new_floor, floor)
        self.dev[slots] = torch.where(keep, new_dev, dev)
        self.flux_mu[slots] = torch.where(present, new_flux_mu, flux_mu)
        self.flux_dev[slots] = torch.where(present, new_flux_dev, flux_dev)
        self.level_history[slots] = levels
        self.flux_history[slots] = fluxes
        self.count[slots] = count + present.to(count.dtype)
        return score, {"excess": excess, "level": level.mean(dim=1), "flux": flux}
