"""The model's buffers stay mapped between calls (models.memory): no page faults in steady state."""

from __future__ import annotations

import concurrent.futures
import platform
import resource

import pytest

from models import FusionModel
from models.memory import keep_freed_memory
from streamer.media import Timestep

from .model_inputs import moving_square_frames, pink_noise, timestep


def _timesteps(n: int) -> list[Timestep]:
    frames = moving_square_frames(3)
    audio = pink_noise(0.2, -30.0)
    return [timestep(1, frames, audio, stream=f"s{i}") for i in range(n)]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_a_model_call_in_its_thread_touches_no_fresh_pages_once_warm() -> None:
    """Without keep_freed_memory, glibc handed the freed buffers back after every call: about 700 page faults a
    call at a batch of 8, 1600 at 32, half the model's CPU."""
    assert keep_freed_memory()
    model = FusionModel(capacity=32)
    slots = [model.add_stream() for _ in range(32)]
    steps = _timesteps(32)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # as the analyzer runs it: a thread of its own
        for _ in range(3):
            pool.submit(model.score, steps, slots).result()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            pool.submit(model.score, steps, slots).result()
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
    assert faults < 100
