"""Model throughput: timesteps/s at batch 1, 8, 64, 256, and batched vs one-at-a-time in the same run.

    .venv/bin/python benchmarks/model_throughput.py [--device auto|cpu|cuda] [--repeats 5] [--json out.json]
    .venv/bin/python benchmarks/model_throughput.py --pairs 3 [--threads 1]   # freed memory kept vs not

Each timestep carries 3 luma frames of 160x90 and 200 ms of 16 kHz audio (100 ms look-back + 100 ms), as the
ingest layer makes them at 30 fps and hop 100 ms. A *call* is ``FusionModel.score``: pack into one buffer, one
host-to-device copy, video and audio activity, fusion, one copy back. For batch B, B streams (slots) send one
timestep each; "one at a time" scores the same B timesteps in B calls of one. Reported: the median over
``repeats`` of timesteps/s per batch size, the time per call, and the speedup of batch 64 over 64 single calls;
then a file's batch: 16 consecutive timesteps of one stream in one call against 16 calls of one.

The model runs as in the analyzer: in a thread of its own, with freed memory kept mapped (``models.memory``).
``--malloc default`` leaves glibc's allocator as it is; ``--pairs N`` runs both, alternately, N times each, in
child processes (the setting is per process) and reports the median time per call of each and their ratio.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from models import FusionModel, resolve_device
from models.memory import keep_freed_memory
from streamer.media import Timestep, VideoFrame


def make_timesteps(n: int, seed: int = 0) -> list[Timestep]:
    rng = np.random.default_rng(seed)
    steps = []
    for i in range(n):
        frames = tuple(VideoFrame(t=j / 30, luma=rng.integers(0, 256, (90, 160), dtype=np.uint8)) for j in range(3))
        audio = rng.normal(0, 0.01, 3200).astype(np.float32)
        steps.append(Timestep(stream_id=f"s{i}", k=0, t=0.0, hop=0.1, frames=frames, audio_window=audio, context=1600))
    return steps


_MODEL_THREAD = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")


def timed(fn: object, repeats: int) -> float:
    """Median seconds of ``fn()`` run in a thread of its own, as the analyzer runs the model."""
    assert callable(fn)
    _MODEL_THREAD.submit(fn).result()  # warm-up (allocations, kernels)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        _MODEL_THREAD.submit(fn).result()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def compare_malloc(args: argparse.Namespace) -> int:
    """Alternate child runs with freed memory kept and with glibc's default; medians and the ratio."""
    runs: dict[str, list[dict[str, float]]] = {"keep": [], "default": []}
    for pair in range(args.pairs):
        for mode in ("keep", "default") if pair % 2 == 0 else ("default", "keep"):
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                command = [sys.executable, __file__, "--device", args.device, "--repeats", str(args.repeats),
                           "--batches", args.batches, "--malloc", mode, "--json", out.name]  # fmt: skip
                if args.threads:
                    command += ["--threads", str(args.threads)]
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                result = json.loads(Path(out.name).read_text())
            runs[mode].append({size: b["ms_per_call"] for size, b in result["batches"].items()})
    medians = {mode: {size: statistics.median(r[size] for r in rs) for size in rs[0]} for mode, rs in runs.items()}
    report = {"pairs": args.pairs, "ms_per_call": medians,
              "ratio": {size: round(medians["keep"][size] / medians["default"][size], 2) for size in medians["keep"]}}
    print(json.dumps(report, indent=2))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,8,64,256")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--malloc", choices=("keep", "default"), default="keep",
                        help="keep freed memory mapped as the analyzer does (default), or glibc's default")
    parser.add_argument("--pairs", type=int, help="compare --malloc keep and default, alternately, N times each")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.pairs:
        return compare_malloc(args)
    if args.malloc == "keep":
        keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    sizes = [int(b) for b in args.batches.split(",")]
    model = FusionModel(capacity=max(sizes)).to(device)
    slots = [model.add_stream() for _ in range(max(sizes))]
    steps = make_timesteps(max(sizes))
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
    file_model = FusionModel().to(device)
    file_slot = file_model.add_stream()
    run = [replace(ts, stream_id="f", k=k, t=k / 10) for k, ts in enumerate(make_timesteps(16, seed=1))]
    one_stream = timed(lambda: file_model.score(run, [file_slot] * 16), args.repeats)
    one_by_one = timed(lambda: [file_model.score([ts], [file_slot]) for ts in run], args.repeats)
    results["one_stream_16_ms"] = round(one_stream * 1e3, 2)
    results["one_stream_16_single_calls_ms"] = round(one_by_one * 1e3, 2)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
