"""User-supplied encoders: ``package.module:Class`` plus an optional local checkpoint.

A video encoder is an ``nn.Module`` called as ``module(frames, valid, slots)`` (shapes as in
:class:`models.video.VideoActivity`), an audio encoder as ``module(audio, present, slots)`` (as in
:class:`models.audio.AudioActivity`). Either returns the score ``(B,)`` in [0, 1], or ``(score, features)``
with ``features`` a dict of ``(B,)`` tensors. Weights come from a local file only (``state_dict`` saved with
``torch.save``); nothing is downloaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn


def load_module(target: str, checkpoint: str | Path | None = None, **kwargs: Any) -> nn.Module:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"encoder must be written package.module:Class, got {target!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load encoder {target!r}: {exc}") from exc
    module = factory(**kwargs)
    if not isinstance(module, nn.Module):
        raise ValueError(f"encoder {target!r} is not a torch.nn.Module")
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise ValueError(f"encoder checkpoint {str(path)!r} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    return module.eval()
