"""S_v: video activity from frame differencing on the small luma image, against a per-stream baseline.

The frames are first averaged over ``pool`` x ``pool`` blocks (default 2: 160x90 -> 80x45), which halves the
noise and quarters the work of everything after it. For each timestep of a stream, the frames are compared with
their predecessor (the previous frame of the
timestep, or the last frame of the stream's previous timestep):

* a pixel *changed* when ``|diff| > max(min_threshold, k * sigma)``, ``sigma = 1.4826 * median|diff|`` (over a
  sample of the pixels) being the frame pair's own noise level, robust to the moving part, so sensor noise,
  compression noise and global flicker (every pixel changing alike) do not count;
* ``changed`` (raw feature) is the largest changed fraction over the timestep's frame pairs, ``span`` the changed
  fraction between the timestep's last frame and the previous timestep's last frame (motion over one hop),
  ``energy`` the largest mean ``|diff|`` (0-255);
* a change over more than ``lighting`` (30%) of the picture at once is the light (switched, auto-exposure, an IR
  switch, a cloud), not motion: it counts as no change;
* the activity ``a = max(changed, span)`` is compared with the stream's recent activity: the last ``window``
  seconds (20) of measurements, their median ``m`` and robust spread ``d`` (1.4826 x their median absolute
  deviation, at least ``min_dev``, 0.2% of the picture):

      S_v = 1 - exp(-relu(a - m - margin * d) / scale)

  ``scale`` 0.01: 1% of the picture changing beyond the usual gives 0.63, 2.3% gives 0.9. A steady busy scene
  (traffic, a crowd, trees in the wind) is its own usual within half the window (less at a stream's start, when
  the window fills), while a person walking through (a few seconds of the 20) does not move the median.

Warm-up: the first ``warmup`` seconds of measurements (5 timesteps at 100 ms) only fill the window (S_v = 0). Being
a median, a moment of motion as a stream starts (a live stream joined mid-action) does not become the usual.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from streamer.options import SourceOptions
from streamer.settings import default_of
from streamer.sync import SyncOptions

from .slots import Rounds, SlotStateMixin

# a custom S_v encoder (models.plugins) is built with no arguments: the analysis image's default size and hop
_LUMA: tuple[int, int] = default_of(SourceOptions, "luma_size")


class VideoActivity(SlotStateMixin):
    """Input ``frames (B, F, H, W)`` float 0-255, ``valid (B, F)`` bool, ``slots (B,)`` long (distinct).

    Returns ``score (B,)`` in [0, 1] and raw features ``changed``, ``span``, ``energy`` (each ``(B,)``). Rows
    without any valid frame get score 0 and leave the state untouched.
    """

    _slot_buffers = ("prev", "has_prev", "recent", "count")
    _slot_defaults: ClassVar[dict[str, float]] = {"recent": float("nan")}
    # The noise level is the median over every 11th pixel (11 divides no common width, so the sample spreads
    # over all columns): as robust, for a fraction of the sort (over all pixels of 64 timesteps of 3 frames it
    # took 16 ms on 2 cores, the model's largest cost).
    NOISE_STRIDE: ClassVar[int] = 11
    prev: Tensor  # (capacity, H, W) the stream's last frame
    has_prev: Tensor  # (capacity,) bool
    recent: Tensor  # (capacity, window steps): the last measurements of activity, a ring (NaN: none yet)
    count: Tensor  # (capacity,) float: measurements so far

    def __init__(
        self,
        height: int = _LUMA[1],
        width: int = _LUMA[0],
        *,
        hop: float = default_of(SyncOptions, "hop"),
        window: float = 20.0,
        k: float = 4.0,
        min_threshold: float = 6.0,
        margin: float = 3.0,
        scale: float = 0.01,
        pool: int = 2,
        warmup: float = 0.5,
        capacity: int = 8,
        min_dev: float = 0.002,
        lighting: float = 0.3,
    ) -> None:
        super().__init__()
        if not (hop > 0 and window > 0 and scale > 0 and k > 0 and min_threshold >= 0 and margin >= 0):
            raise ValueError("hop, window, scale and k must be > 0; min_threshold and margin >= 0")
        if pool < 1 or height // pool < 4 or width // pool < 4:
            raise ValueError(f"pool must be >= 1 and leave at least 4x4 pixels of {width}x{height}")
        self.pool = pool
        height, width = height // pool, width // pool
        self.k, self.min_threshold, self.margin, self.scale = k, min_threshold, margin, scale
        self.min_dev = min_dev
        self.lighting = lighting
        self.warmup_steps = max(1, round(warmup / hop))
        steps = max(self.warmup_steps, round(window / hop))
        self.register_buffer("prev", torch.zeros(capacity, height, width))
        self.register_buffer("has_prev", torch.zeros(capacity, dtype=torch.bool))
        self.register_buffer("recent", torch.full((capacity, steps), float("nan")))
        self.register_buffer("count", torch.zeros(capacity))

    def forward(self, frames: Tensor, valid: Tensor, slots: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return self.forward_rounds(frames, valid, Rounds.distinct(slots))

    def forward_rounds(self, frames: Tensor, valid: Tensor, rounds: Rounds) -> tuple[Tensor, dict[str, Tensor]]:
        """Like :meth:`forward`, but slots may repeat (``rounds``): each timestep is measured against the last
        frame before it (in the batch or the stream's state) and scored against the recent activity its
        stream's earlier timesteps left, all in one pass."""
        filled, last, present = self._prepare(frames, valid)
        prev, has_prev = self._previous(last, present, rounds)
        measured = self._measure(filled, valid, last, prev, has_prev)
        return self._decide(measured, present, has_prev, rounds)

    def _previous(self, last: Tensor, present: Tensor, rounds: Rounds) -> tuple[Tensor, Tensor]:
        """Each row's previous frame ``(B, H, W)`` and whether it has one ``(B,)``: the last frame of the latest
        earlier row of its stream with frames, else the stream's state; the state is moved on to each stream's
        last row with frames."""
        if rounds.n == 1:
            slots = rounds.slots
            prev, has_prev = self.prev[slots], self.has_prev[slots]
            self.prev[slots] = torch.where(present.view(-1, 1, 1), last, prev)
            self.has_prev[slots] = has_prev | present
            return prev, has_prev
        # column 0: the state; column r + 1: row r's last frame. For row r, the latest column <= r with a frame.
        frames = torch.cat([self.prev[rounds.unique].unsqueeze(1), rounds.grid(last, 0.0)], dim=1)  # (U, n+1, H, W)
        state = torch.ones_like(rounds.unique, dtype=torch.bool).unsqueeze(1)
        with_frame = torch.cat([state, rounds.grid(present, False)], dim=1)
        column = torch.arange(rounds.n + 1, device=last.device).expand_as(with_frame)
        latest = torch.where(with_frame, column, 0).cummax(dim=1).values  # (U, n + 1)
        at = latest[rounds.row_of, rounds.order]
        prev = frames[rounds.row_of, at]
        has_prev = self.has_prev[rounds.slots] | (at > 0)
        everyone = torch.arange(rounds.size, device=last.device)
        self.prev[rounds.unique] = frames[everyone, latest[:, -1]]
        self.has_prev[rounds.unique] = self.has_prev[rounds.unique] | (latest[:, -1] > 0)
        return prev, has_prev

    def _prepare(self, frames: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Pooled frames with padding filled, each row's last valid frame, and whether it has any."""
        batch, count = valid.shape
        if self.pool > 1:
            frames = _block_mean(frames, self.pool)
        index = torch.arange(count, device=frames.device).expand(batch, count)
        last_valid = torch.where(valid, index, torch.full_like(index, -1)).amax(dim=1).clamp(min=0)
        filled = self._fill_forward(frames, valid)
        last = filled[torch.arange(batch, device=frames.device), last_valid]
        return filled, last, valid.any(dim=1)

    def _measure(
        self, filled: Tensor, valid: Tensor, last: Tensor, prev: Tensor, has_prev: Tensor
    ) -> dict[str, Tensor]:
        """The activity of each row against its own previous frame: stateless."""
        # The frame before each frame: the previous one in the timestep, or the stream's last frame.
        before = torch.cat([prev.unsqueeze(1), filled[:, :-1]], dim=1)
        pair_ok = valid & torch.cat([has_prev.unsqueeze(1), valid[:, :-1]], dim=1)  # valid frames are a prefix
        diff = (filled - before).abs().flatten(2)  # (B, F, H*W)
        sigma = 1.4826 * diff[:, :, :: self.NOISE_STRIDE].median(dim=2).values
        threshold = torch.clamp(self.k * sigma, min=self.min_threshold).unsqueeze(2)
        fraction = self._not_lighting((diff > threshold).sum(dim=2, dtype=torch.float32) / diff.shape[2])
        zero = torch.zeros_like(fraction)
        changed = torch.where(pair_ok, fraction, zero).amax(dim=1)
        energy = torch.where(pair_ok, diff.mean(dim=2), zero).amax(dim=1)
        span_diff = (last - prev).abs().flatten(1)
        span_sigma = 1.4826 * span_diff[:, :: self.NOISE_STRIDE].median(dim=1).values
        span_threshold = torch.clamp(self.k * span_sigma, min=self.min_threshold)
        span_changed = self._not_lighting(
            (span_diff > span_threshold.unsqueeze(1)).sum(dim=1, dtype=torch.float32) / span_diff.shape[1]
        )
        span = torch.where(has_prev, span_changed, 0.0)
        return {"activity": torch.maximum(changed, span), "changed": changed, "span": span, "energy": energy}

    def _decide(
        self, measured: dict[str, Tensor], present: Tensor, has_prev: Tensor, rounds: Rounds
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Score against each stream's recent activity and add the measurements to it, in order."""
        activity = measured["activity"]
        learn = present & has_prev
        count, (window,) = rounds.push(self.count, learn, (self.recent, activity))
        warm = count >= self.warmup_steps
        median = torch.nanmedian(window, dim=1).values
        spread = 1.4826 * torch.nanmedian((window - median.unsqueeze(1)).abs(), dim=1).values
        spread = torch.nan_to_num(spread, nan=self.min_dev).clamp(min=self.min_dev)
        median = torch.nan_to_num(median, nan=0.0)
        excess = torch.relu(activity - median - self.margin * spread)
        score = torch.where(present & warm, 1.0 - torch.exp(-excess / self.scale), 0.0)
        return score, {name: measured[name] for name in ("changed", "span", "energy")}

    def _not_lighting(self, fraction: Tensor) -> Tensor:
        """A change over more than ``lighting`` of the picture at once is the light (switched, auto-exposure, an
        IR switch, a cloud), not something moving in the scene: it counts as no change, as in mature motion
        detectors (Frigate's ``lightning_threshold``)."""
        return torch.where(fraction > self.lighting, 0.0, fraction)

    @staticmethod
    def _fill_forward(frames: Tensor, valid: Tensor) -> Tensor:
        """Invalid (padding) frames take the value of the last valid frame before them (or stay as they are)."""
        if frames.device.type == "cpu" and bool(valid.all()):
            return frames  # nothing to fill (the common case); on CUDA the check would cost a sync
        out = frames.clone()
        for i in range(1, frames.shape[1]):  # F is a handful of frames: a loop over frames, not streams
            out[:, i] = torch.where(valid[:, i].view(-1, 1, 1), out[:, i], out[:, i - 1])
        return out


def _block_mean(x: Tensor, p: int) -> Tensor:
    """Mean over ``p`` x ``p`` blocks of the last two dimensions (cropped to multiples of ``p``).

    Strided sums: 0.65 ms for 64x3 frames of 160x90 on 2 cores, where ``avg_pool2d`` took 2.9 ms.
    """
    h, w = (x.shape[-2] // p) * p, (x.shape[-1] // p) * p
    rows = sum((x[..., i:h:p, :w] for i in range(1, p)), x[..., 0:h:p, :w])
    return sum((rows[..., j::p] for j in range(1, p)), rows[..., 0::p]) / (p * p)
