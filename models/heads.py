"""Learned fusion heads: S(t) from the modalities' scores and raw features, trained by ``streamer train``.

Every head reads one row per timestep, ``x (B, D)`` float32, whose columns are :data:`INPUTS` (presence flags,
then the video columns, then the audio columns), and returns ``S (B,)`` in [0, 1]; :meth:`FusionHead.logits`
gives the pre-sigmoid value that training fits with a binary cross-entropy. The kinds:

* ``weighted`` (the default): ``S = alpha * S_v + beta * S_a`` with the missing-modality rule of
  :func:`models.fusion.fuse`, ``alpha = sigmoid(u)``, ``beta = 1 - alpha``; training fits ``sigmoid(k (S - theta))``.
  It *is* the built-in fusion, so a checkpoint of it runs as plain alpha, beta and threshold settings;
* ``late``: per-modality probabilities ``p_v = sigmoid(w_v . x_v + b_v)`` and ``p_a`` likewise, combined as their
  normalized product with a prior ``q``: ``S = q p_v p_a / (q p_v p_a + (1 - q)(1 - p_v)(1 - p_a))``, i.e.
  ``sigmoid(logit p_v + logit p_a + logit q)``; an absent modality counts as ``p = 0.5`` (no evidence);
* ``mid``: the standardized columns concatenated (absent modalities zeroed) into a small MLP (``hidden`` units);
* ``attention``: each modality embedded (``dim``), weighted by a learned softmax attention over the modalities
  present, the mix read out by a linear layer.

Inputs are standardized with per-column ``center`` and ``spread`` buffers, set from the training data
(:meth:`FusionHead.fit_scaling`). Checkpoints (:func:`save_checkpoint`, :func:`load_checkpoint`) hold the kind,
its arguments, the ``state_dict``, the chosen event threshold and what the features were extracted with; they
load with ``torch.load(weights_only=True)``: no code runs from the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .fusion import fuse

VIDEO_INPUTS = ("s_v", "video_changed", "video_span")
AUDIO_INPUTS = ("s_a", "audio_excess", "audio_flux")
INPUTS = ("has_v", "has_a", *VIDEO_INPUTS, *AUDIO_INPUTS)
FORMAT = "streamer-fusion-head"
VERSION = 1
KEYS = ("version", "kind", "arguments", "inputs", "state_dict", "threshold", "extraction", "metrics")  # besides format


class FusionHead(nn.Module):
    """Base class: the column layout, the input scaling and the probability."""

    kind: ClassVar[str] = ""
    center: Tensor
    spread: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.inputs = INPUTS
        self.n_video, self.n_audio = len(VIDEO_INPUTS), len(AUDIO_INPUTS)
        self.register_buffer("center", torch.zeros(len(INPUTS)))
        self.register_buffer("spread", torch.ones(len(INPUTS)))

    def arguments(self) -> dict[str, Any]:
        """The constructor's arguments (saved in checkpoints)."""
        return {}

    @torch.no_grad()
    def fit_scaling(self, x: Tensor) -> None:
        """Standardize the feature columns (not the presence flags) by the mean and deviation of ``x (N, D)``."""
        center, spread = x.mean(dim=0), x.std(dim=0).clamp(min=1e-3)
        center[:2], spread[:2] = 0.0, 1.0
        self.center.copy_(center)
        self.spread.copy_(spread)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``has_v (B,)``, ``has_a (B,)`` and the standardized video ``(B, Dv)`` and audio ``(B, Da)`` columns,
        zeroed where the modality is absent."""
        z = (x - self.center) / self.spread
        has_v, has_a = x[:, 0], x[:, 1]
        video = z[:, 2 : 2 + self.n_video] * has_v.unsqueeze(1)
        audio = z[:, 2 + self.n_video :] * has_a.unsqueeze(1)
        return has_v, has_a, video, audio

    def logits(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def score_columns(self, columns: dict[str, Tensor]) -> Tensor:
        """S ``(B,)`` from the fusion model's named outputs (what :class:`models.fusion.FusionModel` calls)."""
        score: Tensor = self(head_input(columns, self.inputs))
        return score

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(x))


class WeightedHead(FusionHead):
    kind = "weighted"

    def __init__(self) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.zeros(()))  # alpha = sigmoid(u)
        self.theta = nn.Parameter(torch.zeros(()))  # the training threshold, sigmoid(theta)
        self.log_k = nn.Parameter(torch.tensor(2.3))  # the training sharpness, exp(log_k)

    @property
    def weights(self) -> tuple[float, float]:
        alpha = float(torch.sigmoid(self.u))
        return alpha, 1.0 - alpha

    def forward(self, x: Tensor) -> Tensor:
        alpha = torch.sigmoid(self.u).expand(x.shape[0])
        col = {name: x[:, i] for i, name in enumerate(self.inputs)}
        return fuse(col["s_v"], col["s_a"], col["has_v"] > 0, col["has_a"] > 0, alpha, 1.0 - alpha)

    def logits(self, x: Tensor) -> Tensor:
        return self.log_k.exp() * (self.forward(x) - torch.sigmoid(self.theta))


class LateHead(FusionHead):
    kind = "late"

    def __init__(self) -> None:
        super().__init__()
        self.video = nn.Linear(self.n_video, 1)
        self.audio = nn.Linear(self.n_audio, 1)
        self.prior = nn.Parameter(torch.zeros(()))

    def modality_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """logit p_v and logit p_a ``(B,)``; 0 (p = 0.5) where the modality is absent."""
        has_v, has_a, video, audio = self.split(x)
        return self.video(video).squeeze(1) * has_v, self.audio(audio).squeeze(1) * has_a

    def logits(self, x: Tensor) -> Tensor:
        video, audio = self.modality_logits(x)
        return video + audio + self.prior


class MidHead(FusionHead):
    kind = "mid"

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.hidden = hidden
        self.mlp = nn.Sequential(nn.Linear(len(INPUTS), hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def arguments(self) -> dict[str, Any]:
        return {"hidden": self.hidden}

    def logits(self, x: Tensor) -> Tensor:
        has_v, has_a, video, audio = self.split(x)
        out: Tensor = self.mlp(torch.cat([has_v.unsqueeze(1), has_a.unsqueeze(1), video, audio], dim=1))
        return out.squeeze(1)


class AttentionHead(FusionHead):
    kind = "attention"

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.dim = dim
        self.embed_video = nn.Linear(self.n_video, dim)
        self.embed_audio = nn.Linear(self.n_audio, dim)
        self.query = nn.Parameter(torch.full((dim,), 0.1))
        self.out = nn.Linear(dim, 1)

    def arguments(self) -> dict[str, Any]:
        return {"dim": self.dim}

    def attention(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The modality tokens ``(B, 2, dim)`` and their attention weights ``(B, 2)`` (0 for an absent one)."""
        has_v, has_a, video, audio = self.split(x)
        tokens = torch.tanh(torch.stack([self.embed_video(video), self.embed_audio(audio)], dim=1))
        present = torch.stack([has_v, has_a], dim=1) > 0
        energy = torch.where(present, tokens @ self.query, torch.full_like(has_v, -1e4).unsqueeze(1))
        weights = torch.softmax(energy, dim=1) * present.any(dim=1, keepdim=True)
        return tokens, weights

    def logits(self, x: Tensor) -> Tensor:
        tokens, weights = self.attention(x)
        out: Tensor = self.out((weights.unsqueeze(2) * tokens).sum(dim=1))
        return out.squeeze(1)


HEADS: dict[str, type[FusionHead]] = {h.kind: h for h in (WeightedHead, LateHead, MidHead, AttentionHead)}


def make_head(kind: str, **arguments: Any) -> FusionHead:
    if kind not in HEADS:
        raise ValueError(f"unknown fusion head {kind!r} (one of {', '.join(HEADS)})")
    return HEADS[kind](**arguments)


def head_input(columns: dict[str, Tensor], inputs: tuple[str, ...] = INPUTS) -> Tensor:
    """``(B, D)`` from named ``(B,)`` columns (the model's outputs), in the order a head reads them."""
    missing = [name for name in inputs if name not in columns]
    if missing:
        raise ValueError(f"the fusion head reads {', '.join(missing)}, which the encoders do not give")
    return torch.stack([columns[name].float() for name in inputs], dim=1)


@dataclass(frozen=True)
class Checkpoint:
    """A trained head with its event threshold and the settings its features were extracted with."""

    head: FusionHead
    threshold: float
    extraction: dict[str, Any] = field(default_factory=dict)  # hop_ms, tau, luma_size, sample_rate, context_ms
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def weights(self) -> tuple[float, float] | None:
        """alpha and beta when the head is the weighted sum, else None."""
        return self.head.weights if isinstance(self.head, WeightedHead) else None

    @property
    def learned_head(self) -> FusionHead | None:
        """The head that computes S, or None for the weighted sum (it runs as the streams' alpha and beta)."""
        return None if isinstance(self.head, WeightedHead) else self.head


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    head = checkpoint.head
    torch.save({
        "format": FORMAT,
        "version": VERSION,
        "kind": head.kind,
        "arguments": head.arguments(),
        "inputs": list(head.inputs),
        "state_dict": {k: v.detach().cpu() for k, v in head.state_dict().items()},
        "threshold": float(checkpoint.threshold),
        "extraction": checkpoint.extraction,
        "metrics": checkpoint.metrics,
    }, path)  # fmt: skip


def load_checkpoint(path: Path) -> Checkpoint:
    """Raises ValueError naming the file and what is wrong with it."""
    if not path.is_file():
        raise ValueError(f"model {str(path)!r}: no such file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file that is not a checkpoint
        raise ValueError(f"model {str(path)!r}: not a streamer model ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"model {str(path)!r}: not a streamer model (made by `streamer train`)")
    if "version" in data and data["version"] != VERSION:
        raise ValueError(f"model {str(path)!r}: made by another version of streamer (version {data['version']})")
    missing = [key for key in KEYS if key not in data]
    if missing:
        raise ValueError(f"model {str(path)!r}: incomplete, it has no {', '.join(map(repr, missing))} (save it again "
                         "with `streamer train`)")  # fmt: skip
    if tuple(data["inputs"]) != INPUTS:
        raise ValueError(f"model {str(path)!r}: made by another version of streamer (its inputs differ)")
    try:
        head = make_head(str(data["kind"]), **data["arguments"])
        head.load_state_dict(data["state_dict"])
        return Checkpoint(head.eval(), float(data["threshold"]), dict(data["extraction"]), dict(data["metrics"]))
    except (TypeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"model {str(path)!r}: cannot be loaded: {' '.join(str(exc).split())[:200]}") from None
