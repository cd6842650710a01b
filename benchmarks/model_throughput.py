"""Model throughput: timesteps/s at batch 1, 8, 64, 256, and batched vs one-at-a-time in the same run.

    .venv/bin/python benchmarks/model_throughput.py [--device auto|cpu|cuda] [--repeats 5] [--json out.json]

Each timestep carries 3 luma frames of 160x90 and 200 ms of 16 kHz audio (100 ms look-back + 100 ms), as the
ingest layer makes them at 30 fps and hop 100 ms. A *call* is ``FusionModel.score``: pack into one buffer, one
host-to-device copy, video and audio activity, fusion, one copy back. For batch B, B streams (slots) send one
timestep each; "one at a time" scores the same B timesteps in B calls of one. Reported: the median over
``repeats`` of timesteps/s per batch size, the time per call, and the speedup of batch 64 over 64 single calls;
then a file's batch: 16 consecutive timesteps of one stream in one call against 16 calls of one; then a live
burst's batch (``--mixed``): 10 timesteps and 10 provisional ones of other streams against 20 timesteps;
with ``--parts 4,16,48``, where a live steady-state call of that many streams goes, stage by stage.

Mind that these figures include page faults the analyzer does not have: between calls glibc gives the freed
buffers back to the kernel here (700 faults a call at a batch of 8, 1600 at 32), while the long-running
analyzer's heaps stay mapped (347 faults a second in all at 32 live streams). With ``MALLOC_TOP_PAD_=268435456``
in the environment (freed memory kept mapped) the times per call here are about half (benchmarks/README.md,
"Model throughput").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from models import FusionModel, resolve_device
from pipelines.config import ModelConfig, StreamConfig
from streamer.media import Timestep, VideoFrame
from streamer.settings import default_of

TAU = default_of(ModelConfig, "tau")
WEIGHTS = (default_of(StreamConfig, "alpha"), default_of(StreamConfig, "beta"))


def make_timesteps(n: int, seed: int = 0) -> list[Timestep]:
    rng = np.random.default_rng(seed)
    steps = []
    for i in range(n):
        frames = tuple(VideoFrame(t=j / 30, luma=rng.integers(0, 256, (90, 160), dtype=np.uint8)) for j in range(3))
        audio = rng.normal(0, 0.01, 3200).astype(np.float32)
        steps.append(Timestep(stream_id=f"s{i}", k=0, t=0.0, hop=0.1, frames=frames, audio_window=audio, context=1600))
    return steps


def timed(fn: object, repeats: int) -> float:
    assert callable(fn)
    fn()  # warm-up (allocations, kernels)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


class LiveStreams:
    """``size`` live streams of one model whose windows are full (260 timesteps scored: past the 20 s window)."""

    def __init__(self, size: int, device: torch.device, seed: int) -> None:
        self.model = FusionModel(tau=TAU, capacity=size).to(device)
        self.slots = [self.model.add_stream(*WEIGHTS) for _ in range(size)]
        self.base = make_timesteps(size, seed=seed)
        self.k = 0
        for _ in range(260):
            self.step()

    def step(self, provisional_from: int | None = None) -> None:
        """Score every stream's next timestep in one call; those from ``provisional_from`` on provisional."""
        k, self.k = self.k, self.k + 1
        cut = len(self.base) if provisional_from is None else provisional_from
        steps = [replace(ts, k=k, t=k / 10, provisional=i >= cut) for i, ts in enumerate(self.base)]
        self.model.score(steps, self.slots)


PARTS = {"video": ("_prepare", "_previous", "_measure", "_decide"), "audio": ("_measure", "_decide"), "align": ()}


def parts(size: int, device: torch.device, calls: int = 200) -> dict[str, float]:
    """Where one live steady-state call of ``size`` streams goes (ms a call): each stage of the video and audio
    activity, the alignment, and ``pack`` (the host buffer and its copy), timed by wrapping them; ``call`` is
    the whole ``score``, the rest of which is the output's copy back and bookkeeping."""
    streams = LiveStreams(size, device, seed=4)
    spent: dict[str, float] = {}

    def timing(owner: object, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def timed_stage(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - start

        setattr(owner, name, timed_stage)

    model = streams.model
    timing(model, "pack", "pack")
    for module, stages in PARTS.items():
        timing(getattr(model, module), "forward_rounds", module)
        for stage in stages:
            timing(getattr(model, module), stage, f"{module}.{stage}")
    spent.clear()
    start = time.perf_counter()
    for _ in range(calls):
        streams.step()
    spent["call"] = time.perf_counter() - start
    return {label: round(seconds / calls * 1e3, 3) for label, seconds in spent.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,8,64,256")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--steady", default="16,48", help="batch sizes of the live steady state (windows full)")
    parser.add_argument("--mixed", type=int, default=10,
                        help="a burst's batch: this many timesteps and as many provisional ones (0: skip)")  # fmt: skip
    parser.add_argument("--parts", type=lambda text: [int(b) for b in text.split(",") if b], default=[],
                        help="batch sizes of the live steady state to split by model stage (e.g. 4,16,48)")  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    sizes = [int(b) for b in args.batches.split(",")]
    most = max(*sizes, 64)  # the batched-against-single comparison is at 64
    model = FusionModel(tau=TAU, capacity=most).to(device)
    slots = [model.add_stream(*WEIGHTS) for _ in range(most)]
    steps = make_timesteps(most)
    results: dict[str, object] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "batches": {},
    }
    for size in sizes:
        seconds = timed(lambda size=size: model.score(steps[:size], slots[:size]), args.repeats)
        results["batches"][str(size)] = {  # type: ignore[index]
            "ms_per_call": round(seconds * 1e3, 3),
            "timesteps_per_s": round(size / seconds, 1),
        }
    single = timed(lambda: [model.score([steps[i]], [slots[i]]) for i in range(64)], args.repeats)
    batched = timed(lambda: model.score(steps[:64], slots[:64]), args.repeats)
    results["one_at_a_time_64_ms"] = round(single * 1e3, 2)
    results["batched_64_ms"] = round(batched * 1e3, 2)
    results["speedup_64"] = round(single / batched, 1)
    # a file's batch: 16 consecutive timesteps of one stream in one call (its baselines updated in order)
    file_model = FusionModel(tau=TAU).to(device)
    file_slot = file_model.add_stream(*WEIGHTS)
    run = [replace(ts, stream_id="f", k=k, t=k / 10) for k, ts in enumerate(make_timesteps(16, seed=1))]
    one_stream = timed(lambda: file_model.score(run, [file_slot] * 16), args.repeats)
    one_by_one = timed(lambda: [file_model.score([ts], [file_slot]) for ts in run], args.repeats)
    results["one_stream_16_ms"] = round(one_stream * 1e3, 2)
    results["one_stream_16_single_calls_ms"] = round(one_by_one * 1e3, 2)
    # live, steady: B streams whose windows are full (a cell's usual read every 0.5 s, as after 20 s of a stream)
    for size in (int(b) for b in args.steady.split(",") if b):
        streams = LiveStreams(size, device, seed=2)
        per_call = timed(lambda streams=streams: [streams.step() for _ in range(50)], args.repeats) / 50
        steady: dict[str, float] = results.setdefault("steady_ms_per_call", {})  # type: ignore[assignment]
        steady[str(size)] = round(per_call * 1e3, 3)
    # live, a burst: half the batch provisional (open timesteps of other streams, scored without learning)
    if args.mixed:
        burst = LiveStreams(2 * args.mixed, device, seed=3)
        mixed = timed(lambda: [burst.step(provisional_from=args.mixed) for _ in range(20)], args.repeats) / 20
        whole = timed(lambda: [burst.step() for _ in range(20)], args.repeats) / 20
        results["mixed_ms_per_call"] = {
            f"{args.mixed}+{args.mixed} provisional": round(mixed * 1e3, 3),
            f"{2 * args.mixed} timesteps": round(whole * 1e3, 3),
        }
    if args.parts:
        results["steady_parts_ms_per_call"] = {str(size): parts(size, device) for size in args.parts}
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
