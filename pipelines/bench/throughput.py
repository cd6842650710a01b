"""``streamer bench throughput``: the analyzer on media files as fast as it goes, against decode-only, same run.

For each stream count N, alternating ``repeats`` times, two measurements, each in a fresh child process (so peak
RSS and CPU time belong to that measurement alone):

* **decode**: N threads, each ``av.open`` + demux + decode of every video and audio packet of its file,
  frame-threaded like the analyzer's file path (plain PyAV: the floor on this machine);
* **analyze**: :class:`pipelines.analyzer.Analyzer` with N file sources (stream ``i`` reads
  ``media[i % len(media)]``), MQTT off: decode, sync, batching, the model and event detection.

Both modes process the same files with the same N. Wall time is measured inside the child around the work only
(interpreter start, imports and model construction are left out and reported apart). The report gives medians per
mode and the throughput ratio analyze/decode (median decode wall / median analyze wall): 1.0 means the analyzer
costs nothing over decoding. The machine may be shared and noisy: only ratios within one run mean much.

API: :func:`run_throughput` returns a report dict, :func:`format_table` renders it for a terminal. The child
entry point is ``python -m pipelines.bench.throughput --worker decode|analyze --streams N --device D FILE...``,
which prints one JSON line.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from pipelines.bench.cpu import CpuTimes, cpu_times, tree_rss_mb
from pipelines.bench.options import ThroughputOptions
from pipelines.flags import add_setting_flags, values_from
from streamer.settings import default_of
from streamer.sync import SyncOptions

MODES = ("decode", "analyze")
HOP_S = default_of(SyncOptions, "hop")  # the analyzer's default: decode-only's timestep count is reported with it
DEVICE = default_of(ThroughputOptions, "device")  # the analyzer's default
WORKER_TIMEOUT_S = 1800.0
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Progress:
    """One finished measurement: ``step`` of ``total`` (warm-up not counted)."""

    step: int
    total: int
    mode: str
    streams: int
    repeat: int
    measurement: dict[str, Any]

    def __str__(self) -> str:
        m = self.measurement
        return (
            f"[{self.step}/{self.total}] {self.streams} stream(s) {self.mode:<7} run {self.repeat + 1}: "
            f"{m['wall_s']:.2f} s wall, {m['cpu_s']:.2f} s CPU, {m['max_rss_mb']:.0f} MB peak"
        )


# -- media ------------------------------------------------------------------------------------------------


def make_clip(path: Path, seconds: float, width: int = 1280, height: int = 720, fps: int = 30) -> Path:
    """A moving gradient with a bouncing box (so H.264 has real work) and a tone over noise; H.264 + AAC.

    Also ``benchmarks/decode_sync.py``'s clip. The box is 200 pixels, less in small frames.
    """
    rng = np.random.default_rng(0)
    box = min(200, width // 4, height // 3)
    top = min(200, height - box)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        y, x = np.mgrid[0:height, 0:width]
        texture = rng.integers(0, 40, (height, width), dtype=np.uint8)
        for i in range(int(seconds * fps)):
            image = ((x + 4 * i) % 256 // 2 + (y // 4) % 64 + texture).astype(np.uint8)
            bx = (37 * i) % (width - box)
            image[top : top + box, bx : bx + box] = 235
            frame = av.VideoFrame.from_ndarray(np.stack([image] * 3, axis=-1), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(video.encode(frame))
        n = 1024
        for j in range(int(seconds * 48000 / n)):
            t = (j * n + np.arange(n)) / 48000
            tone = 0.2 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 0.01, n)
            chunk = av.AudioFrame.from_ndarray(
                np.stack([tone, tone]).astype(np.float32), format="fltp", layout="stereo"
            )
            chunk.sample_rate, chunk.pts = 48000, j * n
            out.mux(audio.encode(chunk))
        out.mux(video.encode())
        out.mux(audio.encode())
    return path


def media_duration(path: Path) -> float:
    """The file's duration in seconds (container header, else the longest stream); raises ValueError."""
    with av.open(str(path)) as container:
        if container.duration:
            return float(container.duration) / 1_000_000
        durations = [float(s.duration * s.time_base) for s in container.streams if s.duration and s.time_base]
    if not durations:
        raise ValueError(f"{path}: no duration in it")
    return max(durations)


def describe_media(path: Path) -> dict[str, Any]:
    with av.open(str(path)) as container:
        info: dict[str, Any] = {"path": str(path), "duration_s": round(media_duration(path), 3)}
        if container.streams.video:
            v = container.streams.video[0]
            rate = v.average_rate
            info["video"] = f"{v.codec_context.name} {v.width}x{v.height} {float(rate):g} fps" if rate else v.name
        if container.streams.audio:
            a = container.streams.audio[0]
            info["audio"] = f"{a.codec_context.name} {a.rate} Hz {a.channels} ch"
    return info


# -- the child process --------------------------------------------------------------------------------------


def plain_decode(path: Path) -> int:
    """Decode every video and audio packet, frame-threaded: ``benchmarks/decode_sync.py``'s baseline."""
    frames = 0
    with av.open(str(path)) as container:
        streams = [*container.streams.video[:1], *container.streams.audio[:1]]
        if container.streams.video:
            container.streams.video[0].codec_context.thread_type = "AUTO"
        for packet in container.demux(*streams):
            frames += len(packet.decode())
    return frames


def _max_rss_mb() -> float:
    # Linux reports kilobytes, macOS bytes
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


class _PeakTreeRss:
    """Samples the process tree's summed resident memory (this process and its children) every 0.1 s."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak_mb = max(self.peak_mb, tree_rss_mb(os.getpid()))

    def __enter__(self) -> _PeakTreeRss:
        if sys.platform.startswith("linux"):
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def _decode_worker(files: list[Path]) -> dict[str, Any]:
    errors: list[BaseException] = []
    counts = [0] * len(files)

    def one(i: int, path: Path) -> None:
        try:
            counts[i] = plain_decode(path)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i, f), name=f"decode-{i}") for i, f in enumerate(files)]
    cpu0, start = _cpu_s(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - start, _cpu_s()
    if errors:
        raise errors[0]
    return {"wall_s": wall, **_cpu_spent(cpu0, cpu), "frames": sum(counts)}


def _cpu_s() -> CpuTimes:
    """CPU times of this process, and of the processes below it (the analyzer's ingest processes)."""
    return cpu_times([os.getpid()])


def _cpu_spent(before: CpuTimes, after: CpuTimes) -> dict[str, float]:
    """CPU seconds between two :func:`_cpu_s`: in all, of this process and of its ingest processes."""
    own, below = after.own - before.own, after.below - before.below
    return {"cpu_s": own + below, "cpu_own_s": own, "cpu_ingest_s": below}


def _analyze_worker(files: list[Path], device: str) -> dict[str, Any]:
    import asyncio

    start = time.perf_counter()
    from pipelines.analyzer import Analyzer  # torch: only in this worker
    from pipelines.config import build_config

    import_s = time.perf_counter() - start
    start = time.perf_counter()
    config = build_config(None, sources=[f"s{i}={path}" for i, path in enumerate(files)],
                          mqtt_flags={"url": "none"}, device=device)  # fmt: skip
    analyzer = Analyzer(config)
    setup_s = time.perf_counter() - start
    cpu0, start = _cpu_s(), time.perf_counter()
    summary = asyncio.run(analyzer.run())
    wall, cpu = time.perf_counter() - start, _cpu_s()
    if summary.exit_code != 0:
        raise RuntimeError("; ".join(str(e) for e in summary.failed) or f"exit code {summary.exit_code}")
    return {
        "wall_s": wall,
        **_cpu_spent(cpu0, cpu),
        "timesteps": summary.timesteps,
        "import_s": import_s,
        "setup_s": setup_s,
        "device": analyzer.runner.device_name,
    }


def worker(mode: str, streams: int, files: Sequence[Path], device: str = DEVICE) -> dict[str, Any]:
    """One measurement in this process: ``streams`` streams over ``files`` (stream i reads files[i % len])."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if streams < 1 or not files:
        raise ValueError("need at least one stream and one file")
    chosen = [Path(files[i % len(files)]) for i in range(streams)]
    durations = [media_duration(p) for p in chosen]
    media_s = sum(durations)
    with _PeakTreeRss() as tree:
        result = _decode_worker(chosen) if mode == "decode" else _analyze_worker(chosen, device)
    if mode == "decode":
        result["timesteps"] = sum(round(d / HOP_S) for d in durations)
    return {
        "mode": mode,
        "streams": streams,
        "wall_s": result.pop("wall_s"),
        "cpu_s": result.pop("cpu_s"),
        "cpu_own_s": result.pop("cpu_own_s"),
        "cpu_ingest_s": result.pop("cpu_ingest_s"),
        "max_rss_mb": max(_max_rss_mb(), tree.peak_mb),  # the analyzer's ingest processes included
        "media_s": media_s,
        "timesteps": result.pop("timesteps"),
        **result,
    }


# -- the parent ---------------------------------------------------------------------------------------------


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_worker(mode: str, streams: int, files: Sequence[Path], device: str) -> dict[str, Any]:
    """One measurement in a fresh child process; raises RuntimeError when it fails."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "pipelines.bench.throughput", "--worker", mode, "--streams", str(streams),
           "--device", device, *(str(f) for f in files)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=WORKER_TIMEOUT_S, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{mode} worker ({streams} stream(s)) failed, exit {proc.returncode}: " + " | ".join(tail))
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _derive(m: dict[str, Any], cores: int) -> dict[str, Any]:
    wall = m["wall_s"]
    return {
        **m,
        "timesteps_per_s": m["timesteps"] / wall,
        "realtime_factor": m["media_s"] / wall,
        "cpu_share": m["cpu_s"] / wall / cores,
        # CPU milliseconds per second of media: in all, the measuring process's own, its ingest processes'
        "cpu_ms_per_media_s": 1000 * m["cpu_s"] / m["media_s"],
        "own_cpu_ms_per_media_s": 1000 * m["cpu_own_s"] / m["media_s"],
        "ingest_cpu_ms_per_media_s": 1000 * m["cpu_ingest_s"] / m["media_s"],
    }


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("wall_s", "cpu_s", "max_rss_mb", "timesteps_per_s", "realtime_factor", "cpu_share", "cpu_ms_per_media_s",
            "own_cpu_ms_per_media_s", "ingest_cpu_ms_per_media_s", "import_s", "setup_s")  # fmt: skip
    out: dict[str, Any] = {k: round(statistics.median(r[k] for r in runs), 4) for k in keys if k in runs[0]}
    out["media_s"] = round(runs[0]["media_s"], 3)
    out["timesteps"] = runs[0]["timesteps"]
    if "device" in runs[0]:
        out["device"] = runs[0]["device"]
    out["runs_wall_s"] = [round(r["wall_s"], 4) for r in runs]
    return out


def machine_info() -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    libavcodec = av.library_versions.get("libavcodec")
    return {
        "cpus": _cores(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": version("torch"),
        "av": av.__version__,
        "libavcodec": ".".join(map(str, libavcodec)) if libavcodec else None,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def run_throughput(
    media: list[Path] | None, options: ThroughputOptions, *, on_progress: Callable[[Progress], None] | None = None
) -> dict[str, Any]:
    """Measure decode-only and the analyzer for each of ``options.streams``; the report dict (see the module
    docstring).

    ``media`` None: an ``options.seconds``-long 720p30 H.264 + AAC clip is generated into a temporary folder. With
    several files, stream i reads ``media[i % len(media)]``. ``on_progress`` gets each finished measurement.
    """
    streams, repeats, device = options.streams, options.repeats, options.device
    if repeats < 1:
        raise ValueError("repeats: expected at least 1")
    if not streams or any(n < 1 for n in streams):
        raise ValueError("streams: expected positive stream counts")
    with tempfile.TemporaryDirectory(prefix="streamer-bench-") as tmp:
        if media is None:
            media = [make_clip(Path(tmp) / "clip720p30.mp4", options.seconds)]
        files = [Path(p) for p in media]
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"{f}: no such file")
        report: dict[str, Any] = {"machine": machine_info(), "device": device,
                                  "media": [describe_media(f) for f in files], "results": []}  # fmt: skip
        cores = report["machine"]["cpus"]
        run_worker("decode", 1, files, device)  # warm-up: the files into the page cache, the interpreter's .pyc
        total, step = len(streams) * repeats * 2, 0
        for n in streams:
            runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
            for r in range(repeats):
                # alternate, and swap the order every other repeat so neither mode always goes first
                for mode in MODES if r % 2 == 0 else MODES[::-1]:
                    m = _derive(run_worker(mode, n, files, device), cores)
                    runs[mode].append(m)
                    step += 1
                    if on_progress is not None:
                        on_progress(Progress(step, total, mode, n, r, m))
            decode, analyze = _medians(runs["decode"]), _medians(runs["analyze"])
            report["results"].append({
                "streams": n,
                "decode": decode,
                "analyze": analyze,
                # same media, same N: throughput ratio = inverse wall-time ratio
                "ratio": round(decode["wall_s"] / analyze["wall_s"], 4),
                "timesteps_per_s": analyze["timesteps_per_s"],
                "realtime_factor": analyze["realtime_factor"],
                "cpu_share": analyze["cpu_share"],
                "cpu_ms_per_media_s": analyze["cpu_ms_per_media_s"],
                "max_rss_mb": analyze["max_rss_mb"],
            })  # fmt: skip
    return report


def format_table(report: dict[str, Any]) -> str:
    """A plain-text aligned table: one row per stream count, analyzer figures against decode-only."""
    header = ["streams", "decode s", "analyze s", "ratio", "timesteps/s", "RT factor", "decode RTF",
              "CPU", "decode CPU", "CPU ms/s", "analyzer+ingest", "decode CPU ms/s", "RSS MB",
              "decode RSS MB"]  # fmt: skip
    rows = [header]
    for r in report["results"]:
        d, a = r["decode"], r["analyze"]
        rows.append([
            str(r["streams"]), f"{d['wall_s']:.3f}", f"{a['wall_s']:.3f}", f"{r['ratio']:.3f}",
            f"{r['timesteps_per_s']:.0f}", f"{r['realtime_factor']:.1f}x", f"{d['realtime_factor']:.1f}x",
            f"{r['cpu_share']:.0%}", f"{d['cpu_share']:.0%}", f"{a['cpu_ms_per_media_s']:.0f}",
            f"{a['own_cpu_ms_per_media_s']:.0f}+{a['ingest_cpu_ms_per_media_s']:.0f}",
            f"{d['cpu_ms_per_media_s']:.0f}", f"{r['max_rss_mb']:.0f}", f"{d['max_rss_mb']:.0f}",
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    m = report["machine"]
    media = ", ".join(f"{Path(x['path']).name} ({x['duration_s']:g} s)" for x in report["media"])
    device = next((r["analyze"].get("device") for r in report["results"]), None) or report.get("device", "?")
    notes = [
        f"media: {media}; device: {device}; medians of {len(report['results'][0]['decode']['runs_wall_s'])} run(s)"
        if report["results"]
        else f"media: {media}",
        f"machine: {m['cpus']} cores ({m['cpu']}), Python {m['python']}, torch {m['torch']}, PyAV {m['av']}, "
        f"{m['date']}",
        "ratio = analyze throughput / decode-only throughput (same media, same N); RT factor = media s per wall s;",
        "CPU = process CPU time (ingest processes included) / wall / cores; CPU ms/s = CPU milliseconds per",
        "second of media, the analyzer's process + its ingest processes apart; RSS = peak resident memory of the",
        "measuring process and its ingest processes together (sampled every 0.1 s)",
    ]
    return "\n".join([*lines, "", *notes])


# -- command line (the child entry point; the user-facing command is `streamer bench throughput`) -------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.bench.throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--worker", choices=MODES, help="one measurement in this process: print one JSON line")
    add_setting_flags(parser, ThroughputOptions, "bench throughput")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("media", type=Path, nargs="*", help="media files (default: a generated 720p30 clip)")
    args = parser.parse_args(argv)
    options = ThroughputOptions(**values_from(args, ThroughputOptions))
    if args.worker:
        if len(options.streams) != 1 or not args.media:
            parser.error("--worker takes one --streams N and at least one FILE")
        print(json.dumps(worker(args.worker, options.streams[0], args.media, options.device)), flush=True)
        return 0

    def progress(p: Progress) -> None:
        print(p, file=sys.stderr, flush=True)

    report = run_throughput(args.media or None, options, on_progress=progress)
    print(format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
