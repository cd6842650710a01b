"""Decode + sync throughput against plain PyAV decoding of the same clip, in the same run.

    .venv/bin/python benchmarks/decode_sync.py [--seconds 20] [--repeats 5] [--json out.json]

Encodes a 720p30 H.264 + AAC clip into a temporary folder, then alternates two measurements ``repeats`` times:

* baseline: ``av.open`` + demux + decode of every video and audio packet, frame-threaded like our file path;
* streamer: ``Stream`` over the same file: decode, luma extraction, resampling, hand-off to asyncio and
  cutting into 100 ms timesteps, every timestep consumed.

Reports the median wall time of each and the throughput ratio baseline/streamer (target >= 0.9). The machine
is shared and noisy: only the ratio within one run means anything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pipelines.bench.throughput import make_clip, plain_decode
from streamer.spec import parse_source
from streamer.stream import Stream


async def streamer_decode(path: Path) -> int:
    timesteps = 0
    async for _ in Stream(parse_source(str(path))):
        timesteps += 1
    return timesteps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="clip length (default 20)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating measurements of each (default 5)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip720p30.mp4", args.seconds)
        plain_decode(clip)  # warm caches
        baseline, ours = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            frames = plain_decode(clip)
            baseline.append(time.perf_counter() - start)
            start = time.perf_counter()
            timesteps = asyncio.run(streamer_decode(clip))
            ours.append(time.perf_counter() - start)
    b, o = statistics.median(baseline), statistics.median(ours)
    result = {
        "clip": f"1280x720 30 fps H.264 + AAC 48 kHz stereo, {args.seconds:g} s",
        "decoded_frames": frames,
        "timesteps": timesteps,
        "baseline_s": round(b, 3),
        "streamer_s": round(o, 3),
        "baseline_fps": round(args.seconds * 30 / b, 1),
        "streamer_fps": round(args.seconds * 30 / o, 1),
        "ratio": round(b / o, 3),
        "runs": {"baseline": [round(x, 3) for x in baseline], "streamer": [round(x, 3) for x in ours]},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
