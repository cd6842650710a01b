"""A deliberately slow S_v encoder for the slow-stage fault test, loaded as ``tests.slow_encoder:SlowVideo``."""

from __future__ import annotations

import time

from torch import Tensor

from models.video import VideoActivity

SECONDS_PER_TIMESTEP = 0.2  # twice a 100 ms hop: the model cannot keep up with one live stream


class SlowVideo(VideoActivity):
    def forward(self, frames: Tensor, valid: Tensor, slots: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        time.sleep(SECONDS_PER_TIMESTEP * frames.shape[0])
        return super().forward(frames, valid, slots)
