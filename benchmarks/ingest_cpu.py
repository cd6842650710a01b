"""Capture CPU of live RTSP streams sharing one ingest process: the code against a baseline in the same run.

    .venv/bin/python benchmarks/ingest_cpu.py [--streams 8] [--pairs 3] [--seconds 20] [--size 320x240]
        [--audio-frame-ms 20] [--against CHECKOUT] [--json out.json]

Starts the impulse server (``pipelines/bench/impulse_server.py``, GStreamer under ``/usr/bin/python3``), then,
``pairs`` times, two child processes one after the other, each running ``streams`` :class:`~streamer.stream.Stream`
clients of it on one event loop, as an ingest process shared by live streams does (its timesteps are packed and
pickled as for the wire): one opened as the code does (RTSP read without PyAV's read timeout, FFmpeg's own
``timeout`` instead), one with PyAV's read timeout put back (:func:`streamer.av_input.read_timeout` returning
``stall_timeout``, as before). Each child reports its CPU (``time.process_time``) over ``seconds`` after a warm-up,
as a percentage of a core a stream, and how long a timestep took from its last video frame decoded to out of
the sync (p50, p99). Reported: both per pair, the medians, and the ratio of the median CPUs (the code over
PyAV's timeout; below 1 is cheaper). The pairs alternate which goes first; the machine is shared and noisy.

``--against CHECKOUT`` (another commit's work tree, e.g. from ``git worktree add``): the baseline is that
checkout's code instead of PyAV's timeout put back, for any change to the capture path.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.bench.latency import impulse_server  # noqa: E402

CHILD = """
import asyncio, os, pickle, sys, time
sys.path.insert(0, {root!r})
import streamer.av_input as av_input
if {pyav_timeout!r}:
    av_input.read_timeout = lambda spec, options: options.stall_timeout
from pipelines.config import build_config
from streamer.ingest import Kept, pack
from streamer.stream import Stream

async def one(sc, counts, i, delays):
    kept = Kept()
    async for ts in Stream(sc.spec, sc.source, sc.sync):
        pickle.dumps(("ts", pack(ts, kept), 0), protocol=pickle.HIGHEST_PROTOCOL)
        kept.release(ts.k)
        counts[i] += 1
        if ts.frames and not ts.video_repeated:
            delays.append(time.time() - max(f.wall_time for f in ts.frames))

async def main():
    cfg = build_config(None, sources=[f"s{{i}}={url}" for i in range({streams})], mqtt_flags={{"url": "none"}})
    counts = [0] * {streams}
    delays = []
    tasks = [asyncio.create_task(one(sc, counts, i, delays)) for i, sc in enumerate(cfg.streams)]
    await asyncio.sleep({warmup})
    c0, n0 = time.process_time(), sum(counts)
    delays.clear()
    await asyncio.sleep({seconds})
    c1, n1 = time.process_time(), sum(counts)
    delays.sort()
    p50, p99 = (1000 * delays[int(q * (len(delays) - 1))] for q in (0.5, 0.99))
    print(100 * (c1 - c0) / {seconds} / {streams}, (n1 - n0) / {seconds} / {streams}, p50, p99, flush=True)
    os._exit(0)

asyncio.run(main())
"""


def measure(url: str, streams: int, seconds: float, *, pyav_timeout: bool, root: Path = ROOT) -> dict[str, float]:
    """One child running ``root``'s code: % of a core a stream, timesteps a second a stream, and the p50 and p99
    (ms) from a timestep's last video frame decoded to the timestep out of the sync."""
    code = CHILD.format(
        root=str(root), url=url, streams=streams, seconds=seconds, warmup=6.0, pyav_timeout=pyav_timeout
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=seconds + 120,
                         cwd=root)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"child failed: {out.stderr[-2000:]}")
    cpu, rate, p50, p99 = (float(x) for x in out.stdout.split())
    return {"cpu": cpu, "timesteps_per_s": rate, "out_p50_ms": p50, "out_p99_ms": p99}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--audio-frame-ms", type=int, default=20)
    parser.add_argument("--against", type=Path, help="baseline: this checkout's code (default: PyAV's timeout)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    base = "against" if args.against else "pyav"
    labels = {"code": "the code", "pyav": "PyAV's read timeout", "against": str(args.against)}
    width, height = args.size.split("x")
    with impulse_server("--width", width, "--height", height, "--audio-frame-ms", str(args.audio_frame_ms)) as url:
        pairs: list[dict[str, dict[str, float]]] = []
        for pair in range(args.pairs):
            row: dict[str, dict[str, float]] = {}
            for name in ("code", base) if pair % 2 == 0 else (base, "code"):
                root = args.against.resolve() if name == "against" else ROOT
                row[name] = measure(url, args.streams, args.seconds, pyav_timeout=name == "pyav", root=root)
            pairs.append(row)
            said = "; ".join(_describe(labels[name], row[name]) for name in ("code", base))
            print(f"pair {pair + 1}: {said}", flush=True)
    medians = {name: {key: statistics.median(p[name][key] for p in pairs) for key in pairs[0][name]}
               for name in ("code", base)}  # fmt: skip
    ratio = medians["code"]["cpu"] / medians[base]["cpu"]
    both = "; ".join(_describe(labels[name], medians[name]) for name in ("code", base))
    print(f"{args.streams} streams in one process, {os.cpu_count()} cores, medians: {both}; CPU ratio {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"streams": args.streams, "pairs": pairs, "cpu_ratio": ratio}, indent=2))


def _describe(label: str, m: dict[str, float]) -> str:
    return (f"{label} {m['cpu']:.2f}% of a core a stream, decoded to timestep p50 {m['out_p50_ms']:.0f} ms, "
            f"p99 {m['out_p99_ms']:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
