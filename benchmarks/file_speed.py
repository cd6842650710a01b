"""A whole ``streamer run`` of a 720p file against plain PyAV decoding of it, start-up and steady state apart.

Each measurement is a fresh process, timed from outside (interpreter start, imports, the model, the end of the
run included), on two clips of the same content (``make_clip`` of :mod:`pipelines.bench.throughput`: 720p30
H.264 + AAC) of ``--short`` and ``--long`` seconds. The steady-state speed of a mode is the extra media of the long
clip over the extra wall time it took, ``(long - short) / (wall_long - wall_short)``: start-up cancels out. Plain
decoding is ``plain_decode`` (every video and audio packet, frame-threaded). Pairs alternate which mode goes first;
the figures are medians over ``--pairs`` and ratios are analyze against decode (1.0: as fast as plain decoding).

    python benchmarks/file_speed.py --pairs 3 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipelines.bench.throughput import make_clip

ROOT = Path(__file__).resolve().parents[1]
PLAIN = (
    "import sys; from pathlib import Path; from pipelines.bench.throughput import plain_decode; "
    "plain_decode(Path(sys.argv[1]))"
)


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (the process and its children) of one run."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return wall, _children_cpu()


_reaped = [0.0]  # CPU seconds of the children reaped so far


def _children_cpu() -> float:
    """CPU seconds of the children reaped since the last call."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    spent, _reaped[0] = total - _reaped[0], total
    return spent


def commands(clip: Path, streamer: str) -> dict[str, list[str]]:
    return {
        "decode": [sys.executable, "-c", PLAIN, str(clip)],
        "analyze": [streamer, "run", str(clip), "--mqtt", "none", "-q"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", type=float, default=60.0, help="the short clip's seconds (default 60)")
    parser.add_argument("--long", type=float, default=240.0, help="the long clip's seconds (default 240)")
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs per clip (default 3)")
    parser.add_argument("--clips", type=Path, help="keep the clips here (made once)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    folder = args.clips or Path(tempfile.mkdtemp(prefix="file_speed-"))
    folder.mkdir(parents=True, exist_ok=True)
    clips = {}
    for seconds in (args.short, args.long):
        path = folder / f"clip{seconds:g}.mp4"
        if not path.exists():
            make_clip(path, seconds)
        clips[seconds] = path
    streamer = str(Path(sys.executable).with_name("streamer"))
    walls: dict[str, dict[float, list[float]]] = {m: {s: [] for s in clips} for m in ("decode", "analyze")}
    cpus: dict[str, dict[float, list[float]]] = {m: {s: [] for s in clips} for m in ("decode", "analyze")}
    for seconds, clip in clips.items():
        subprocess.run(commands(clip, streamer)["decode"], check=True)  # the clip and the files warm
        _children_cpu()
        for pair in range(args.pairs):
            order = ["decode", "analyze"] if pair % 2 == 0 else ["analyze", "decode"]
            for mode in order:
                wall, cpu = timed(commands(clip, streamer)[mode])
                walls[mode][seconds].append(wall)
                cpus[mode][seconds].append(cpu)
                print(f"{mode:8} {seconds:5g} s: {wall:6.2f} s wall, {cpu:6.2f} s CPU", flush=True)
    med = {m: {s: statistics.median(v) for s, v in per.items()} for m, per in walls.items()}
    extra = args.long - args.short
    steady = {m: extra / (med[m][args.long] - med[m][args.short]) for m in med}  # media seconds a wall second
    report: dict[str, Any] = {
        "clips": {f"{s:g}": str(p) for s, p in clips.items()},
        "wall_s": {m: {f"{s:g}": v for s, v in per.items()} for m, per in walls.items()},
        "cpu_s": {m: {f"{s:g}": v for s, v in per.items()} for m, per in cpus.items()},
        "steady_x_realtime": {m: round(v, 2) for m, v in steady.items()},
        "startup_s": {m: round(med[m][args.short] - args.short / steady[m], 2) for m in med},
        "steady_ratio": round(steady["analyze"] / steady["decode"], 3),
        "whole_ratio_long": round(med["decode"][args.long] / med["analyze"][args.long], 3),
    }
    print(
        f"steady state: analyze {steady['analyze']:.1f}x real time, decode {steady['decode']:.1f}x: ratio "
        f"{report['steady_ratio']}; start-up {report['startup_s']['analyze']} s against "
        f"{report['startup_s']['decode']} s; whole process on {args.long:g} s: ratio {report['whole_ratio_long']}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
