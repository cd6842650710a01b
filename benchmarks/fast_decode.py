"""The ingest's CPU on a live-like stream with and without the deblocking filter (issue 30).

    python benchmarks/fast_decode.py [--seconds 30] [--pairs 3]

A camera-like 720p30 H.264 clip (``make_clip`` of ``pipelines/bench/throughput.py``: x264 veryfast, the filter on
in the bitstream, as cameras encode) is remuxed to MPEG-TS, which takes the live streams' path (its snapshots are
decoded again from its own packets, ``streamer/packets.py``). Each run reads it through
:class:`streamer.source.Source` in a fresh process and reports that process's CPU seconds: ``auto`` (no filter,
packets kept) against ``off`` (``fast_decode = false``: the decoder's own pictures, with the filter), alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import av

from pipelines.bench.cpu import cpu_times
from pipelines.bench.throughput import make_clip
from streamer.media import VideoFrame
from streamer.options import SourceOptions
from streamer.source import Source
from streamer.spec import parse_source


def remux_ts(src: Path, dst: Path) -> Path:
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        video = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = video
            out.mux(packet)
    return dst


def one_run(path: Path, mode: str) -> dict[str, float]:
    """In this process: read every frame; CPU seconds spent."""

    async def read() -> int:
        frames = 0
        options = SourceOptions(fast_decode=None if mode == "auto" else False)
        async for item in Source(parse_source(f"cam={path}"), options):
            frames += isinstance(item, VideoFrame)
        return frames

    before = cpu_times([os.getpid()])
    frames = asyncio.run(read())
    return {"frames": frames, "cpu_s": round(cpu_times([os.getpid()]).own - before.own, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--run", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(one_run(Path(args.run[1]), args.run[0])))
        return 0
    with tempfile.TemporaryDirectory(prefix="fast-decode-") as tmp:
        clip = remux_ts(make_clip(Path(tmp) / "cam.mp4", args.seconds), Path(tmp) / "cam.ts")
        results: dict[str, list[float]] = {"off": [], "auto": []}
        for i in range(args.pairs):
            for mode in ("off", "auto") if i % 2 == 0 else ("auto", "off"):
                line = subprocess.run([sys.executable, __file__, "--run", mode, str(clip)], capture_output=True,
                                      text=True, check=True).stdout.strip().splitlines()[-1]  # fmt: skip
                results[mode].append(json.loads(line)["cpu_s"])
                print(f"{mode:>4}: {results[mode][-1]:.2f} s CPU", flush=True)
        off, auto = sum(results["off"]), sum(results["auto"])
        print(f"{args.seconds:g} s of 720p30: with the filter {off / args.pairs:.2f} s CPU, without it (packets kept) "
              f"{auto / args.pairs:.2f} s: {100 * (auto / off - 1):+.0f}%")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
