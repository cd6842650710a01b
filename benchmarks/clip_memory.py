"""Memory of the event clips' packet rings (``--clips``): live RTSP streams in one process, with and without rings.

    .venv/bin/python benchmarks/clip_memory.py [--streams 32] [--size 320x240] [--seconds 15] [--pre-roll 5]
        [--json out.json]

Starts the impulse server (``pipelines/bench/impulse_server.py``: impulses of a white box and a tone every 1.5 s,
x264 ``ultrafast``, Opus 10 ms), then two child processes one after the other, each running ``streams``
:class:`~streamer.stream.Stream` clients of it on one event loop as an ingest process does: one keeping a
:class:`~streamer.clips.PacketRing` per stream (``pre_roll`` + 2 s, as ``streamer run --clips`` does for a live
stream), one without. After ``seconds`` each reports its resident memory (psutil), and the first its rings' bytes
and the stream's bitrate. The rings hold from the key frame before the last ``pre_roll + 2`` seconds, so their
size is about ``bitrate x (pre_roll + 2 s + up to one GOP)``: the bitrate line lets a reader scale to a camera's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.bench.latency import impulse_server  # noqa: E402
from pipelines.config import CLIP_MARGIN  # noqa: E402

CHILD = """
import asyncio, json, os, sys, time
sys.path.insert(0, {root!r})
import psutil
from pipelines.config import build_config
from streamer.stream import Stream

async def main():
    cfg = build_config(None, sources=[f"s{{i}}={url}" for i in range({streams})], mqtt_flags={{"url": "none"}})
    streams = [Stream(sc.spec, sc.source, sc.sync, clip_keep={keep}) for sc in cfg.streams]

    async def drain(stream):
        async for ts in stream:
            pass

    tasks = [asyncio.create_task(drain(s)) for s in streams]
    await asyncio.sleep({seconds})
    rings = [s.ring for s in streams if s.ring is not None]
    span = [r.span for r in rings]
    print(json.dumps({{"rss": psutil.Process().memory_info().rss, "ring_bytes": sum(r.size for r in rings),
                      "rings": len(rings), "ring_seconds": sum(span) / max(1, len(span))}}), flush=True)
    os._exit(0)

asyncio.run(main())
"""


def measure(url: str, streams: int, seconds: float, keep: float | None) -> dict[str, float]:
    code = CHILD.format(root=str(ROOT), url=url, streams=streams, seconds=seconds, keep=keep)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=seconds + 120,
                         cwd=ROOT)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"child failed: {out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--pre-roll", type=float, default=5.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    width, height = args.size.split("x")
    keep = args.pre_roll + CLIP_MARGIN
    with impulse_server("--width", width, "--height", height, "--box", "--interval", "1.5") as url:
        with_rings = measure(url, args.streams, args.seconds, keep)
        without = measure(url, args.streams, args.seconds, None)
    per_stream = with_rings["ring_bytes"] / args.streams
    bitrate = per_stream * 8 / max(with_rings["ring_seconds"], 1e-9)
    added = (with_rings["rss"] - without["rss"]) / args.streams
    report = {
        "streams": args.streams, "size": args.size, "keep_s": keep, "with_rings": with_rings, "without": without,
        "ring_bytes_per_stream": per_stream, "rss_added_per_stream": added, "bitrate_bps": bitrate,
    }  # fmt: skip
    print(f"{args.streams} live {args.size} streams, rings of {keep:g} s: {with_rings['ring_bytes'] / 1e6:.2f} MB "
          f"({per_stream / 1e3:.0f} kB a stream, {with_rings['ring_seconds']:.1f} s of packets at "
          f"{bitrate / 1e3:.0f} kbit/s); process RSS {with_rings['rss'] / 1e6:.0f} MB with, {without['rss'] / 1e6:.0f} "
          f"MB without ({report['rss_added_per_stream'] / 1e3:+.0f} kB a stream)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
