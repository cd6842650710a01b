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
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streamer.spec import parse_source
from streamer.stream import Stream


def make_clip(path: Path, seconds: float, width: int = 1280, height: int = 720, fps: int = 30) -> Path:
    """A moving gradient with a bouncing box (so H.264 has real work) and a tone over noise."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        y, x = np.mgrid[0:height, 0:width]
        texture = rng.integers(0, 40, (height, width), dtype=np.uint8)
        for i in range(int(seconds * fps)):
            image = ((x + 4 * i) % 256 // 2 + (y // 4) % 64 + texture).astype(np.uint8)
            bx = (37 * i) % (width - 200)
            image[200:400, bx : bx + 200] = 235
            frame = av.VideoFrame.from_ndarray(np.stack([image] * 3, axis=-1), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(video.encode(frame))
        n = 1024
        for j in range(int(seconds * 48000 / n)):
            t = (j * n + np.arange(n)) / 48000
            tone = 0.2 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 0.01, n)
            frame = av.AudioFrame.from_ndarray(
                np.stack([tone, tone]).astype(np.float32), format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts = 48000, j * n
            out.mux(audio.encode(frame))
        out.mux(video.encode())
        out.mux(audio.encode())
    return path


def plain_decode(path: Path) -> int:
    frames = 0
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        video.codec_context.thread_type = "AUTO"
        for packet in container.demux(video, audio):
            frames += len(packet.decode())
    return frames


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
