"""S_a: audio activity from log-mel band levels and spectral flux, against each stream's recent background.

Each timestep's audio window (look-back context + the timestep's samples) goes through torchaudio's
``MelSpectrogram`` (25 ms windows, 10 ms hop, 40 bands from ``f_min`` = 80 Hz up, grouped into ``bands`` wider
bands by averaging their dB: a real sound covers several mel bands, and fewer, wider bands fluctuate less; where a
tone fills one mel band of a group, the group's level is at least its mean power less ``tone_drop``, 8 dB, so that
a whistle, a beep or an alarm 12 dB over the bed fires wherever its pitch falls on the bands); the frames that fall
in the timestep itself are used. Below 80 Hz is left out: the deepest rumble (HVAC, an exercise bike's thumps,
wind on the microphone) lives there. Thunder, a truck, a door slammed have their energy from about 80 Hz up; the
rumble of a bed above 80 Hz is described by its texture (below), as on real recordings the texture bar is what
keeps a bike's hum quiet (it made 19 false events in 2 minutes before there was one).

* **Digital silence** (a spectrogram frame with no power at all: a muted or not yet started track, a dropout,
  a digitally silent AAC track as CCTV exports carry) is not sound: those frames are left out of the level and the
  flux, and a timestep that is mostly silence counts as the modality being *absent* (``present`` False: S_a is
  ``null`` in scores and events). It never teaches the background either.
* **Audibility floor**: every mel band's power has the power white noise at ``quiet_dbfs`` (-90 dBFS, the
  self-noise of the quietest microphones and below it the quantization noise of 16-bit audio) added before the
  logarithm. Without it an empty band (a test tone's, a codec's) reads -100 dB one moment and -90 the next as
  a codec switches its quantization, and such a 9 dB "step" scored as a sound; now what lies far below the
  floor reads as the floor, and what lies above it is measured as before.
* ``level`` (dB, per band): mean log level over the timestep's frames. ``flux``: spectral flux, the mean over
  frames of the summed positive band-to-band increase (dB), which marks onsets.
* **The background** is the recent past, ``window`` seconds (8) of the stream's heard timesteps, described by
  robust statistics, so that sounds (unless they fill half the window) do not count as background, while a change
  of the background itself (a level step, the end of a fade-in, a fan switched on) is the background within half
  the window: per band, with ``q25`` and ``q50`` the 25th percentile and the median of the window,

      floor = q50,  sigma = max(min_dev, (q50 - q25) / 0.674)

  (for steady noise ``floor`` is its mean and ``sigma`` its deviation; the lower half's spread, as sounds widen
  the upper half). A busy background (a street, traffic) spreads its levels and so raises its own bar.
* **A bed that changes** (music, a voice talking on, a machine changing phase, a kitchen) has loud moments of its
  own that a steady floor does not describe: per band, the bar is raised to the bed's ``texture_q`` (0.98)
  quantile over the last ``texture_window`` seconds (16: speech with its pauses, or a piece of music, shows its
  range over more than the floor's 8 s) of heard timesteps older than ``lag`` (2 s, so that a sound never raises
  its own bar), but at most ``cap`` (6 dB) over ``floor + k * sigma``: a voice going on and on, or a piano, are
  a bed, while a sound 12 dB or more over the bed still stands out, and a few loud sounds close together (each
  its own event) do not hide the next one by more than the cap. The flux likewise. For a steady bed the quantile lies
  under ``floor + k * sigma`` and nothing changes. Until the bed's texture is known (its first ``lag`` seconds
  of heard audio, then fading out over ``young``, 3 s, as its quantile is read from a few seconds only), the bar
  is raised by the cap: the bed may be as textured as that (a road's noise heard for a second), while a clear
  sound still fires.
* ``excess = max over bands of (level - bar)`` (dB), ``flux_excess`` likewise for the flux, and

      S_a = 1 - exp(-(relu(excess - margin) + flux_weight * relu(flux_excess)) / scale)

  With ``k`` 3, ``margin`` 3 dB and ``scale`` 4 dB, a sound 12 dB over a steady background (sigma 1 dB) gives
  about 0.82, 20 dB 0.97.

Warm-up: a stream's first ``warmup`` seconds of heard audio (5 timesteps at 100 ms) only fill the window
(S_a = 0). Being a median and a lower-half spread, neither a first timestep that is partly silence nor a bang as
the stream is joined sets the background.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torchaudio
from torch import Tensor

from streamer.settings import default_of
from streamer.sync import SyncOptions

from .quantiles import lower_quantiles, upper_quantile
from .slots import Rounds, SlotStateMixin

_SILENT_POWER = 1e-4  # a frame whose summed mel power is below this holds digital silence (zeros)


class AudioActivity(SlotStateMixin):
    """Input ``audio (B, N)`` float (context + hop samples), ``present (B,)`` bool, ``slots (B,)`` long (distinct).

    ``hop_samples`` (``hop`` at ``sample_rate``) is the length of the timestep's own part at the end of each
    window. Returns ``score (B,)`` and the features ``excess`` (dB), ``level`` (dB, mean over bands), ``flux``
    (dB) and ``present`` (bool: the row had audio that was not digital silence), each ``(B,)``.
    """

    _slot_buffers = ("levels", "fluxes", "count")
    _slot_defaults: ClassVar[dict[str, float]] = {"levels": float("nan"), "fluxes": float("nan")}
    levels: Tensor  # (capacity, window steps, bands) dB: the recent heard timesteps' levels, a ring
    fluxes: Tensor  # (capacity, window steps) dB
    count: Tensor  # (capacity,) float: heard timesteps so far
    quartiles: Tensor  # (2,) the quantiles the background is read from: 0.25, 0.5
    quiet_power: Tensor  # (n_mels, 1) each mel band's power of white noise at quiet_dbfs

    def __init__(
        self,
        sample_rate: int = default_of(SyncOptions, "sample_rate"),
        *,
        n_mels: int = 40,
        bands: int = 10,
        f_min: float = 80.0,
        hop: float = default_of(SyncOptions, "hop"),
        window: float = 8.0,
        texture_window: float = 16.0,
        k: float = 3.0,
        margin: float = 3.0,
        scale: float = 4.0,
        flux_weight: float = 0.5,
        min_dev: float = 1.0,
        min_flux_dev: float = 2.0,
        quiet_dbfs: float = -90.0,
        warmup: float = 0.5,
        texture_q: float = 0.98,
        lag: float = 2.0,
        cap: float = 6.0,
        young: float = 3.0,
        tail: int = 5,
        tone_drop: float = 8.0,
        capacity: int = 8,
    ) -> None:
        super().__init__()
        if not (hop > 0 and window > 0 and scale > 0 and k >= 0 and margin >= 0 and flux_weight >= 0):
            raise ValueError("hop, window, scale must be > 0; k, margin and flux_weight >= 0")
        if bands < 1 or n_mels % bands:
            raise ValueError(f"bands must divide n_mels ({n_mels}), got {bands}")
        self.n_fft = round(0.025 * sample_rate)
        self.frame_hop = round(0.010 * sample_rate)
        self.min_window = self.n_fft + self.frame_hop  # samples of audio a timestep's window needs (context + hop)
        self.hop_samples = round(hop * sample_rate)
        self.bands = bands
        self.k, self.margin, self.scale, self.flux_weight = k, margin, scale, flux_weight
        # the least sigma of each band's level, and of the flux (the background's columns)
        self.register_buffer("min_devs", torch.tensor([min_dev] * bands + [min_flux_dev]), persistent=False)
        self.min_devs: Tensor
        self.warmup_steps = max(1, round(warmup / hop))
        self.window_steps = max(self.warmup_steps, round(window / hop))
        steps = max(self.window_steps, round(texture_window / hop))
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=self.n_fft,
            hop_length=self.frame_hop,
            n_mels=n_mels,
            center=False,
            f_min=f_min,
        )
        # The expected mel power of white noise at quiet_dbfs: variance * sum(window^2) per FFT bin, times each
        # filter's weights (n_mels, 1).
        noise_power = 10.0 ** (quiet_dbfs / 10.0) * self.mel.spectrogram.window.pow(2).sum()
        self.register_buffer("quiet_power", (noise_power * self.mel.mel_scale.fb.sum(dim=0)).unsqueeze(1),
                             persistent=False)  # fmt: skip
        self.register_buffer("levels", torch.full((capacity, steps, bands), float("nan")))
        self.register_buffer("fluxes", torch.full((capacity, steps), float("nan")))
        self.register_buffer("count", torch.zeros(capacity))
        self.register_buffer("quartiles", torch.tensor([0.25, 0.5]), persistent=False)  # q25, q50
        self.texture_q = texture_q
        self.lag_steps = round(lag / hop)
        self.cap = cap
        self.young = young
        self.tail = tail
        self.tone_drop = tone_drop
        self.young_steps = max(1, round(young / hop))

    def forward(self, audio: Tensor, present: Tensor, slots: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return self.forward_rounds(audio, present, Rounds.distinct(slots))

    def forward_rounds(self, audio: Tensor, present: Tensor, rounds: Rounds) -> tuple[Tensor, dict[str, Tensor]]:
        """Like :meth:`forward`, but slots may repeat (``rounds``): each timestep is scored against its stream's
        background as the stream's earlier timesteps in the batch left it, all in one pass."""
        level, flux, heard = self._measure(audio)
        return self._decide(level, flux, present & heard, rounds)

    def _measure(self, audio: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per row: band levels ``(B, bands)`` dB and flux ``(B,)`` over the timestep's own sounding frames, and
        whether it has sound at all ``(B,)`` (not mostly digital silence)."""
        if audio.shape[1] < self.min_window:
            raise ValueError(f"audio windows need >= {self.min_window} samples, got {audio.shape[1]}")
        power = self.mel(audio)  # (B, n_mels, T)
        sounding = power.sum(dim=1) > _SILENT_POWER  # (B, T)
        batch, n_mels, frames = power.shape
        floored = (power + self.quiet_power).view(batch, self.bands, n_mels // self.bands, frames)
        # a band's level: the mean of its mel bands' dB, or where a tone fills one of them, its mean power less
        # tone_drop dB (a mean of dB would average a whistle or a beep away, by how its pitch falls on the bands)
        grouped = torch.maximum(
            (10.0 * torch.log10(floored)).mean(dim=2), 10.0 * torch.log10(floored.mean(dim=2)) - self.tone_drop
        )  # (B, bands, T)
        # the frames that end inside the timestep's own samples (and the one before each, for the flux)
        own = max(1, min(frames - 3, round(self.hop_samples / self.frame_hop)))
        here = sounding[:, -own:].float()
        n_here = here.sum(dim=1)
        level = (grouped[:, :, -own:] * here.unsqueeze(1)).sum(dim=2) / n_here.clamp(min=1).unsqueeze(1)
        if self.tail and own > self.tail:
            # a sound that starts late in the timestep, measured over its own frames: the loudest mean of the
            # timestep's last j frames (j >= tail), not diluted by the quiet before it
            weighted = (grouped[:, :, -own:] * here.unsqueeze(1)).flip(2).cumsum(dim=2)  # (B, bands, own)
            counts = here.flip(1).cumsum(dim=1).unsqueeze(1)  # (B, 1, own)
            tails = (weighted / counts.clamp(min=1))[:, :, self.tail - 1 :]
            enough = counts[:, :, self.tail - 1 :] >= self.tail
            level = torch.maximum(level, torch.where(enough, tails, -torch.inf).amax(dim=2))
        rise = torch.relu(grouped[:, :, -own:] - grouped[:, :, -own - 1 : -1]).sum(dim=1)  # (B, own)
        # no flux out of silence: the frame before and the two before it (which the 25 ms window overlaps) sound
        settled = sounding[:, 2:-1] & sounding[:, 1:-2] & sounding[:, :-3]  # (B, T - 3): for frames 3..T-1
        pair = here * settled[:, -own:].float()
        flux = (rise * pair).sum(dim=1) / pair.sum(dim=1).clamp(min=1)
        heard = n_here * 2 > own
        return level, flux, heard

    def background(self, series: Tensor) -> tuple[Tensor, Tensor]:
        """The background of windows ``series (B, W, bands + 1)``, each band's level and the flux (NaN: empty):
        ``floor`` and ``sigma`` ``(B, bands + 1)``, the window's median and the spread of its lower half (see the
        module's docstring)."""
        q = lower_quantiles(series, ~series.isnan(), self.quartiles)  # (2, B, bands + 1): q25, q50
        return q[1], torch.maximum((q[1] - q[0]) / 0.674, self.min_devs)

    def texture(self, series: Tensor, valid: Tensor) -> Tensor:
        """The bed's loud moments: the ``texture_q`` quantile of each column of ``series (B, W, bands + 1)`` over its
        entries where ``valid`` (``(B, W, 1)``) and not NaN, -inf where there are none: ``(B, bands + 1)``."""
        high = upper_quantile(series, valid & ~series.isnan(), self.texture_q)
        return torch.nan_to_num(high, nan=-torch.inf)

    def _decide(self, level: Tensor, flux: Tensor, present: Tensor, rounds: Rounds) -> tuple[Tensor, dict[str, Tensor]]:
        """Score against each stream's background and add the heard timesteps to it, in order. The band levels
        and the flux are scored alike, as the columns of one series ``(B, W, bands + 1)``."""
        # Every heard timestep goes into the window: one ring slot each.
        count, (levels, fluxes) = rounds.push(self.count, present, (self.levels, level), (self.fluxes, flux))
        warm = count >= self.warmup_steps
        series = torch.cat([levels, fluxes.unsqueeze(2)], dim=2)
        ages = rounds.ages(count, levels.shape[1]).unsqueeze(2)  # (B, W, 1)
        newest = rounds.newest(count, series.shape[1], self.window_steps)  # (B, window steps)
        floor, sigma = self.background(series.gather(1, newest.unsqueeze(2).expand(-1, -1, series.shape[2])))
        high = self.texture(series, ages >= self.lag_steps)  # a sound is never its own texture
        # until the texture is known (lag + young s of heard audio), the bed may be as textured as the cap
        known = ((count - self.lag_steps) / self.young_steps).clamp(0.0, 1.0) if self.young else torch.ones_like(count)
        base = floor + self.k * sigma + (self.cap * (1.0 - known)).unsqueeze(1)
        bar = torch.maximum(base, torch.minimum(high, base + self.cap))  # a textured bed's loud moments, capped
        over = torch.nan_to_num(torch.cat([level, flux.unsqueeze(1)], dim=1) - bar, nan=0.0)  # (B, bands + 1)
        excess, flux_excess = over[:, :-1].amax(dim=1), over[:, -1]
        activity = torch.relu(excess - self.margin) + self.flux_weight * torch.relu(flux_excess)
        score = torch.where(present & warm, 1.0 - torch.exp(-activity / self.scale), 0.0)
        return score, {"excess": excess, "level": level.mean(dim=1), "flux": flux, "present": present}
