"""``streamer bench latency``: glass-to-event latency, end to end, with real processes.

1. A real RTSP server (:mod:`pipelines.bench.impulse_server`, gst-rtsp-server under Debian's python3) emits a
   live A/V stream, dark and silent but for *impulses* (a white frame and a loud tone) every ``interval`` s plus
   jitter, logging the wall-clock time each impulse leaves its source: the glass time.
2. The analyzer (``streamer run``, its normal settings, ``streams`` clients of the same stream) publishes to a
   real mosquitto; a separate subscriber here records when each event start arrives.
3. In the same run, a decode-only client (:mod:`pipelines.bench.decode_client`) on the same stream records when
   each impulse leaves its decoder: glass-to-decode, the floor set by encoding, network and decoding.

Per impulse and stream: event latency = receipt - glass; floor = the later modality's glass-to-decode (a
timestep is complete only when both modalities passed its end); analyzer-added = event latency - floor. With
``--impulse box`` (seen and heard) the floor is when both the impulse's picture and its sound were decoded,
from its first glass time: the server switches the two on up to a frame apart. The
per-stage breakdown comes from the analyzer's own stats (sync wait, batch wait, model, publish).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np

from pipelines.bench.cpu import Busy, busy, cpu_times
from pipelines.bench.mosquitto import MOSQUITTO, MqttBroker, free_port
from pipelines.bench.options import LatencyOptions, described
from pipelines.bench.throughput import machine_info
from streamer.errors import ConfigError

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("impulse_server.py")
PREFIX = "bench"
CONNECT_GRACE = 1.5  # seconds after every analyzer stream is online before impulses count
# An impulse's flash turns the whole picture white alike, which S_v rejects as global flicker: impulses are heard,
# S = 0.5 * S_a at the default weights, over the default threshold 0.3 as any clear sound alone.


@contextlib.contextmanager
def impulse_server(*args: str) -> Iterator[str]:
    """The impulse server (``args``: its options, e.g. ``--width 320 --height 240``) on a free port, for a
    benchmark's own clients: its URL while it runs; SystemExit when it cannot start."""
    server = subprocess.Popen(
        [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(free_port()), "--path", "/impulse", *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        ready = server.stdout.readline()
        if not ready.startswith("READY "):
            raise SystemExit("the impulse server did not start (needs python3-gi and gir1.2-gst-rtsp-server-1.0)")
        yield ready.split()[1]
    finally:
        server.terminate()
        server.wait(10)


@dataclass
class Impulse:
    k: int
    video_wall: float
    audio_wall: float

    @property
    def glass(self) -> float:
        return min(self.video_wall, self.audio_wall)


@dataclass
class Observations:
    impulses: list[Impulse] = field(default_factory=list)
    events: list[tuple[str, float, dict[str, Any]]] = field(default_factory=list)  # (stream, receipt, payload)
    decoded: list[tuple[str, float]] = field(default_factory=list)  # (modality, wall)
    online: dict[str, float] = field(default_factory=dict)  # stream -> first "online" receipt
    decoded_by: dict[int, list[tuple[str, float]]] = field(default_factory=dict)  # every decode client's decodes
    decoders_online: dict[int, float] = field(default_factory=dict)
    stats: dict[str, Any] | None = None
    cpu: Busy | None = None  # the analyzer's process and its ingest processes, or the decode clients


def check_requirements() -> None:
    """Raise ConfigError naming what is missing to run the benchmark on this machine."""
    missing = []
    if shutil.which(MOSQUITTO) is None:
        missing.append("mosquitto")
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        ok = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        missing.append("GStreamer's RTSP server for /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0)")
    if missing:
        raise ConfigError(
            f"bench latency needs {' and '.join(missing)}: install them with `bash scripts/system-deps.sh` (Debian)"
        )


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95, 99])
    return {"n": len(values), "p50": round(float(p50), 2), "p95": round(float(p95), 2), "p99": round(float(p99), 2),
            "max": round(float(max(values)), 2)}  # fmt: skip


async def _lines(stream: asyncio.StreamReader, handle: Callable[[str], None]) -> None:
    async for raw in stream:
        line = raw.decode(errors="replace").strip()
        if line:
            handle(line)


async def run_latency(
    options: LatencyOptions, workdir: Path, *, say: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Run the benchmark (about ``impulses * (interval + jitter/2)`` seconds plus start-up); the report.

    Whatever fails on the way, what was started is undone, latest first: the tasks reading the processes and
    the broker, the subscriber's connection, the processes, the broker (one exit stack). A process's log file
    is closed here as soon as the process holds its own copy."""
    check_requirements()
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    obs = Observations()
    async with contextlib.AsyncExitStack() as stack:
        broker = MqttBroker(workdir / "mosquitto")
        broker.start()
        stack.callback(broker.stop)
        procs: list[asyncio.subprocess.Process] = []
        stack.push_async_callback(_end_processes, procs)
        tasks: list[asyncio.Task[None]] = []

        async def spawn(log: str, *args: str, stdout: int = asyncio.subprocess.PIPE) -> asyncio.subprocess.Process:
            with (workdir / log).open("w") as stderr:
                proc = await asyncio.create_subprocess_exec(*args, stdout=stdout, stderr=stderr)
            procs.append(proc)
            return proc

        port = free_port()
        server = await spawn(
            "server.log", SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(port), "--path", "/impulse", "--width",
            str(options.size[0]), "--height", str(options.size[1]), "--fps", str(options.fps), "--interval",
            str(options.interval), "--jitter", str(options.jitter), *(["--box"] if options.impulse == "box" else []),
            "--audio-frame-ms", str(options.audio_frame_ms),
        )  # fmt: skip
        assert server.stdout is not None
        async with asyncio.timeout(20):
            ready = (await server.stdout.readline()).decode()
        if not ready.startswith("READY "):
            raise ConfigError(f"the impulse server did not start: {(workdir / 'server.log').read_text()[-500:]}")
        url = ready.split()[1]

        def on_impulse(line: str) -> None:
            item = json.loads(line)
            obs.impulses.append(Impulse(int(item["impulse"]), float(item["video_wall"]), float(item["audio_wall"])))

        client = await stack.enter_async_context(aiomqtt.Client(broker.host, broker.port))
        stack.push_async_callback(_cancel, tasks)  # before the client leaves: its subscriber reads it
        tasks.append(asyncio.create_task(_lines(server.stdout, on_impulse)))
        await client.subscribe(f"{PREFIX}/#", qos=1)
        tasks.append(asyncio.create_task(_subscriber(client, obs)))

        decoders = options.streams if options.decode_only else 1
        for index in range(decoders):
            decoder = await spawn(
                f"decode_client{index}.log", sys.executable, "-m", "pipelines.bench.decode_client", url,
                *(["--hwaccel", options.hwaccel] if options.hwaccel else []),
            )  # fmt: skip
            assert decoder.stdout is not None
            obs.decoded_by[index] = []
            tasks.append(asyncio.create_task(_lines(decoder.stdout, _on_decoded(obs, index))))
        if options.decode_only:
            async with asyncio.timeout(60 + decoders):
                while len(obs.decoders_online) < decoders:
                    if all(p.returncode is not None for p in procs[1:]):
                        raise ConfigError(f"the decode clients exited: see {workdir}/decode_client0.log")
                    await asyncio.sleep(0.1)
            start = max(obs.decoders_online.values()) + CONNECT_GRACE
            before = cpu_times(p.pid for p in procs[1:])
            await _measure(options, obs, start, say)
            obs.cpu = busy(before, cpu_times(p.pid for p in procs[1:]))
            return analyze(options, obs, start)

        run_args = [f"s{i}={url}" for i in range(options.streams)]
        run_args += ["--mqtt", broker.url, "--prefix", PREFIX, "--hop-ms", str(options.hop_ms), "--max-wait-ms",
                     str(options.max_wait_ms), "--threshold", str(options.threshold), "--device", options.device,
                     "--stats-interval", "2", "-q"]  # fmt: skip
        if options.hwaccel is not None:
            run_args += ["--hwaccel", options.hwaccel]
        if not options.early:
            run_args.append("--no-early-start")
        if options.clips:
            run_args += ["--clips", str(workdir / "clips")]
        analyzer = await spawn("analyzer.log", sys.executable, "-m", "pipelines.cli.main", "run", *run_args,
                               stdout=asyncio.subprocess.DEVNULL)  # fmt: skip
        say(f"server {url}, broker {broker.url}, {options.streams} analyzer stream(s); waiting for them to go online")

        expected = {f"s{i}" for i in range(options.streams)}
        async with asyncio.timeout(60):
            while set(obs.online) != expected:
                if analyzer.returncode is not None:
                    raise ConfigError(f"the analyzer exited: {(workdir / 'analyzer.log').read_text()[-800:]}")
                await asyncio.sleep(0.1)
        start = max(obs.online.values()) + CONNECT_GRACE + _learning()
        # a stream whose first timesteps were dropped (a loaded machine, the analyzer still starting) learns its
        # scene later: impulses count once the analyzer reports every stream scored its learning time
        learning_steps = round(1000 * _learning() / options.hop_ms)
        async with asyncio.timeout(60):
            while not all(s.get("timesteps", 0) >= learning_steps for s in _reported(obs, expected)):
                if analyzer.returncode is not None:
                    raise ConfigError(f"the analyzer exited: {(workdir / 'analyzer.log').read_text()[-800:]}")
                await asyncio.sleep(0.1)
        start = max(start, time.time())
        before = cpu_times([analyzer.pid])
        await _measure(options, obs, start, say)
        obs.cpu = busy(before, cpu_times([analyzer.pid]))
        analyzer.terminate()
        async with asyncio.timeout(10):
            await analyzer.wait()
        await asyncio.sleep(0.3)  # the final stats message
    return analyze(options, obs, start)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _end_processes(procs: list[asyncio.subprocess.Process]) -> None:
    """SIGTERM each process still running, SIGKILL it after 5 s."""
    for proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it ended just now
                proc.terminate()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def _on_decoded(obs: Observations, index: int) -> Callable[[str], None]:
    def handle(line: str) -> None:
        item = json.loads(line)
        if item["modality"] == "online":
            obs.decoders_online.setdefault(index, float(item["wall"]))
            return
        obs.decoded_by[index].append((str(item["modality"]), float(item["wall"])))
        if index == 0:
            obs.decoded.append((str(item["modality"]), float(item["wall"])))

    return handle


async def _measure(options: LatencyOptions, obs: Observations, start: float, say: Callable[[str], None]) -> None:
    """Wait for ``options.impulses`` impulses from ``start`` on, then for the last one's events and decodes."""
    say(f"online; measuring {options.impulses} impulses (about {options.impulses * options.interval:.0f} s)")
    last_said = 0
    budget = 30 + options.impulses * (options.interval + options.jitter) * 1.5
    async with asyncio.timeout(budget):
        while len(counted := [i for i in obs.impulses if i.glass >= start]) < options.impulses:
            if len(counted) // 10 > last_said:
                last_said = len(counted) // 10
                say(f"{len(counted)} impulses")
            await asyncio.sleep(0.2)
    await asyncio.sleep(min(options.interval, 1.5))  # the last impulse's event and decode arrive


async def _subscriber(client: aiomqtt.Client, obs: Observations) -> None:
    async for message in client.messages:
        now = time.time()
        topic = str(message.topic)
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        parts = topic.split("/")
        if topic == f"{PREFIX}/stats":
            obs.stats = json.loads(payload)
        elif len(parts) == 3 and parts[2] == "events":
            obs.events.append((parts[1], now, json.loads(payload)))
        elif len(parts) == 3 and parts[2] == "status" and payload == b"online":
            obs.online.setdefault(parts[1], now)


def analyze(options: LatencyOptions, obs: Observations, start: float) -> dict[str, Any]:
    """Match events and decodes to impulses; the report (all latencies in ms)."""
    every = sorted(obs.impulses, key=lambda i: i.glass)
    impulses = [i for i in every if i.glass >= start][: options.impulses]
    following = {id(a): b.glass for a, b in itertools.pairwise(every)}  # the next impulse, counted or not
    streams = [f"s{i}" for i in range(options.streams)]
    starts = [(s, r) for s, r, e in obs.events if e.get("type") == "start"]
    event_ms: list[float] = []
    added_ms: list[float] = []
    video_ms: list[float] = []
    audio_ms: list[float] = []
    floor_ms: list[float] = []
    missed = 0
    matched: set[tuple[str, float]] = set()
    for imp in impulses:
        window_end = following.get(id(imp), imp.glass + options.interval)
        video = next((w for m, w in obs.decoded if m == "video" and imp.glass - 0.05 <= w < window_end), None)
        audio = next((w for m, w in obs.decoded if m == "audio" and imp.glass - 0.05 <= w < window_end), None)
        floor = None
        if video is not None:
            video_ms.append(1000 * (video - imp.video_wall))
        if audio is not None:
            audio_ms.append(1000 * (audio - imp.audio_wall))
        if video is not None and audio is not None:
            if options.impulse == "box":
                # seen and heard: no detector can have the impulse before both its picture and its sound are
                # decoded, and the server switches the two on up to a frame apart
                floor = 1000 * (max(video, audio) - imp.glass)
            else:
                floor = 1000 * max(video - imp.video_wall, audio - imp.audio_wall)
            floor_ms.append(floor)
        for stream in streams:
            receipt = next((r for s, r in starts if s == stream and imp.glass <= r < window_end), None)
            if receipt is None:
                missed += 1
                continue
            matched.add((stream, receipt))
            latency = 1000 * (receipt - imp.glass)
            event_ms.append(latency)
            if floor is not None:
                added_ms.append(latency - floor)
    last_end = following.get(id(impulses[-1]), impulses[-1].glass + options.interval) if impulses else 0.0
    first, last = (impulses[0].glass, last_end) if impulses else (0.0, 0.0)
    spurious = sum(1 for s, r in starts if first <= r < last and (s, r) not in matched)
    decode_ms, decode_missed = _every_decoder(options, obs, impulses, following)
    stats = obs.stats or {}
    event_pcts, added_pcts = percentiles(event_ms), percentiles(added_ms)
    return {
        "options": described(options),
        "machine": machine_info() | {"device": stats.get("device")},
        "counts": {"impulses": len(impulses), "events": len(event_ms), "missed": missed, "spurious": spurious},
        "event_latency_ms": event_pcts,
        "decode_video_ms": percentiles(video_ms),
        "decode_audio_ms": percentiles(audio_ms),
        "floor_ms": percentiles(floor_ms),
        "analyzer_added_ms": added_pcts,
        # every decode client (one, or ``streams`` with decode_only): glass to both modalities decoded
        "decoders": {"clients": len(obs.decoded_by), "missed": decode_missed, "floor_ms": percentiles(decode_ms)},
        "stages_ms": stats.get("latency_ms", {}),
        "event_delivery_ms": stats.get("event_delivery_ms"),
        "batch": stats.get("batch"),
        "dropped": {
            s: v.get("dropped_timesteps", 0) + v.get("dropped_frames", 0) for s, v in stats.get("streams", {}).items()
        },
        # timesteps scored, provisional ones scored (sudden changes before their timestep closed), events they started
        "early": {
            key: sum(v.get(key, 0) for v in stats.get("streams", {}).values())
            for key in ("timesteps", "provisional", "early_starts")
        },
        "cpu_ms_per_media_s": _cpu_per_stream(options, obs.cpu),
        "tags": stats.get("tags"),  # requests tagged and dropped, and the tagging's CPU seconds, over the run
        "targets": targets(options),
        "samples": {
            "event_ms": event_ms,
            "added_ms": added_ms,
            "video_ms": video_ms,
            "audio_ms": audio_ms,
            # what was matched, for a look at a miss: each impulse's glass time, each event start's stream,
            # receipt, media time and wall time in the analyzer (which splits the delivery off the rest)
            "impulse_glass": [i.glass for i in impulses],
            "event_starts": [
                (s, r, e.get("t"), e.get("wall_time")) for s, r, e in obs.events if e.get("type") == "start"
            ],
        },
    }


def _cpu_per_stream(options: LatencyOptions, cpu: Busy | None) -> dict[str, float] | None:
    """CPU milliseconds per stream and second of media over the measured stretch: the analyzer's own process and
    its ingest processes, or the decode clients (each with whatever it runs below it)."""
    if cpu is None:
        return None
    per = cpu.per_stream_ms(options.streams)
    if options.decode_only:
        return {"decode_only": round(per["own"] + per["below"], 2)}
    return {"analyzer": per["own"], "ingest": per["below"], "total": round(per["own"] + per["below"], 2)}


def _every_decoder(
    options: LatencyOptions, obs: Observations, impulses: list[Impulse], following: dict[int, float]
) -> tuple[list[float], int]:
    """Per decode client and impulse, glass to the later modality's decode (ms); and how many were not decoded."""
    floors: list[float] = []
    missed = 0
    for decoded in obs.decoded_by.values():
        for imp in impulses:
            window_end = following.get(id(imp), imp.glass + options.interval)
            found = {m: w for m, w in reversed(decoded) if imp.glass - 0.05 <= w < window_end}
            if "video" in found and "audio" in found:
                floors.append(1000 * (max(found.values()) - imp.glass))
            else:
                missed += 1
    return floors, missed


def targets(options: LatencyOptions) -> dict[str, float]:
    """The project's targets on 2 CPU cores: added p50 <= hop/2 + 15 ms and p99 <= hop + 40 ms with one stream,
    p99 <= hop + 80 ms with up to 8 streams; none set beyond 8."""
    hop = options.hop_ms
    if options.streams == 1:
        return {"added_p50_ms": hop / 2 + 15, "added_p99_ms": hop + 40}
    return {"added_p99_ms": hop + 80} if options.streams <= 8 else {}


def format_report(report: dict[str, Any]) -> str:
    o, c = report["options"], report["counts"]
    lines = [
        f"latency: {o['streams']} stream(s), hop {o['hop_ms']:g} ms, device {report['machine']['device']}, "
        f"{c['impulses']} impulses: {c['events']} events, {c['missed']} missed, {c['spurious']} spurious",
        f"{'measure (ms)':<34}{'n':>5}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}",
    ]
    rows = [
        ("glass to event (analyzer)", report["event_latency_ms"]),
        ("glass to decode, video", report["decode_video_ms"]),
        ("glass to decode, audio", report["decode_audio_ms"]),
        ("floor (later modality decoded)", report["floor_ms"]),
        ("added by the analyzer", report["analyzer_added_ms"]),
    ]
    for name, p in rows:
        cells = "".join(f"{p[k]:>9.1f}" if p[k] is not None else f"{'-':>9}" for k in ("p50", "p95", "p99", "max"))
        lines.append(f"{name:<34}{p['n']:>5}{cells}")
    stages = report.get("stages_ms") or {}
    if stages:
        lines.append("stages (analyzer's own stamps, all timesteps):")
        for name in ("sync", "batch", "model", "publish", "total"):
            if name in stages:
                lines.append(
                    f"  {name:<32}{'':>5}{stages[name]['p50'] or 0:>9.1f}{'':>9}{stages[name]['p99'] or 0:>9.1f}"
                )
    early = report.get("early") or {}
    if early.get("timesteps"):
        lines.append(f"decided on the frame: {early['provisional']} provisional scores beside {early['timesteps']} "
                     f"timesteps, {early['early_starts']} events started by one")  # fmt: skip
    cpu = report.get("cpu_ms_per_media_s")
    if cpu:
        lines.append("CPU per stream, ms a second of media: " + ", ".join(f"{k.replace('_', '-')} {v:.1f}"
                                                                        for k, v in cpu.items()))  # fmt: skip
    tags = report.get("tags")
    if tags:
        lines.append(f"tags: {tags['tagged']} requests tagged, {tags['dropped']} dropped (past the budget), "
                     f"{tags['cpu_s']:.2f} s of CPU")  # fmt: skip
    added, verdicts = report["analyzer_added_ms"], []
    for name, limit in report["targets"].items():
        key = "p50" if "p50" in name else "p99"
        if added[key] is not None:
            verdicts.append(f"added {key} <= {limit:g} ms {'met' if added[key] <= limit else 'MISSED'}")
    if verdicts:
        lines.append("targets: " + "; ".join(verdicts))
    return "\n".join(lines)


def plot_report(report: dict[str, Any], path: Path) -> Path:
    """Latency CDFs and the stage breakdown as one PNG (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, label in (("event_ms", "glass to event"), ("video_ms", "glass to decode (video)"),
                       ("audio_ms", "glass to decode (audio)"), ("added_ms", "added by the analyzer")):  # fmt: skip
        values = np.sort(np.asarray(report["samples"][key], dtype=np.float64))
        if len(values):
            left.step(values, np.arange(1, len(values) + 1) / len(values), where="post", label=label)
    left.set_xlabel("ms")
    left.set_ylabel("fraction of impulses")
    left.set_title("latency CDF")
    left.grid(alpha=0.3)
    left.legend(loc="lower right")
    stages = report.get("stages_ms") or {}
    names = ["decode", *[n for n in ("sync", "batch", "model", "publish") if n in stages]]
    p50 = [report["decode_video_ms"]["p50"] or 0.0] + [stages[n]["p50"] or 0.0 for n in names[1:]]
    p99 = [report["decode_video_ms"]["p99"] or 0.0] + [stages[n]["p99"] or 0.0 for n in names[1:]]
    y = np.arange(len(names))
    right.barh(y - 0.2, p50, height=0.4, label="p50")
    right.barh(y + 0.2, p99, height=0.4, label="p99")
    right.set_yticks(y, names)
    right.invert_yaxis()
    right.set_xlabel("ms")
    right.set_title("per stage (decode: glass to decode, video)")
    right.legend()
    o = report["options"]
    fig.suptitle(f"streamer bench latency: {o['streams']} stream(s), hop {o['hop_ms']:g} ms")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _reported(obs: Observations, streams: set[str]) -> list[dict[str, Any]]:
    """The latest stats message's figures of each of ``streams`` (empty ones for a stream it lacks)."""
    reported = (obs.stats or {}).get("streams", {})
    return [reported.get(stream, {}) for stream in streams]


def _learning() -> float:
    """How long a stream learns its scene before its video can fire: impulses count from then on."""
    from models.video import LEARNING_S  # (torch: imported only when a bench runs)

    return LEARNING_S
