"""A soak with faults: live streams for a long time while the broker and the RTSP server restart.

Real processes, as users run them: the impulse RTSP server (:mod:`pipelines.bench.impulse_server`: a dark,
quiet stream with a white box and a tone every ``interval`` s, each impulse's wall-clock time logged), a
mosquitto that keeps its sessions on disk, and ``streamer run --config`` on ``streams`` clients of it plus a
looping file (paced as live) with a zone, with clips, the web view and ``/metrics`` on. A subscriber with a
persistent session records every message; a live-view client stays connected. Every ``broker_every`` s the
broker stops for ``down`` s (a clean restart: it saves the sessions); every ``rtsp_every`` s the RTSP server is
killed and started again ``down`` s later on the same port.

Every ``sample`` s: resident memory, open descriptors and threads of the analyzer and of its ingest processes.
At the end (the outbox drained, then SIGTERM): events *detected* (the analyzer's own count,
``streamer_stream_events_total``) against those *delivered* (distinct start ids received; duplicates counted),
starts without an end, each RTSP outage's statuses (every stream went from online to another status and back),
and the latency from each impulse to each stream's event start (p50 / p99 over the whole run).

``benchmarks/soak.py`` runs it for an hour; ``tests/test_soak.py`` for a few minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import numpy as np
import psutil

from pipelines.bench.latency import SERVER_SCRIPT, SYSTEM_PYTHON
from pipelines.bench.mosquitto import MqttBroker, free_port
from pipelines.bench.throughput import make_clip

PREFIX = "soak"
SUBSCRIBER = "soak-subscriber"


@dataclass(frozen=True)
class SoakOptions:
    streams: int = 32
    minutes: float = 60.0
    warmup: float = 120.0  # seconds before the baselines of memory, descriptors and threads
    broker_every: float = 300.0
    rtsp_every: float = 420.0
    down: float = 5.0  # seconds each outage lasts
    interval: float = 10.0  # seconds between impulses
    size: tuple[int, int] = (320, 240)
    audio_frame_ms: int = 20
    sample: float = 10.0
    file: bool = True  # and a looping file, paced as live, with a zone
    clips: bool = True
    ui: bool = True


@dataclass
class Record:
    impulses: list[float] = field(default_factory=list)  # glass times (wall clock)
    starts: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (stream, event id) -> receipts
    ends: set[tuple[str, str]] = field(default_factory=set)
    zone_starts: set[tuple[str, str]] = field(default_factory=set)
    statuses: list[tuple[float, str, str]] = field(default_factory=list)  # (receipt, stream, status)
    outages: list[dict[str, Any]] = field(default_factory=list)  # {"kind", "at", "back"}
    samples: list[dict[str, Any]] = field(default_factory=list)
    view: dict[str, int] = field(default_factory=lambda: {"connects": 0, "messages": 0})
    subscriber_reconnects: int = 0


def _config(options: SoakOptions, workdir: Path, url: str, broker: MqttBroker, ui: int, metrics: int) -> Path:
    lines = [f'ui = "127.0.0.1:{ui}"' if options.ui else "", f'metrics = "127.0.0.1:{metrics}"', "",
             "[mqtt]", f'url = "{broker.url}"', f'prefix = "{PREFIX}"', ""]  # fmt: skip
    if options.clips:
        lines += ["[clips]", f'dir = "{workdir / "clips"}"', "max_size = 200", ""]
    for i in range(options.streams):
        lines += ["[[streams]]", f'name = "s{i}"', f'source = "{url}"', ""]
    if options.file:
        clip = make_clip(workdir / "yard.mp4", 20.0, 320, 240)
        lines += ["[[streams]]", 'name = "yard"', f'source = "{clip}"', "loop = true", "realtime = true", "",
                  "[[streams.zones]]", 'name = "gate"', "polygon = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]",
                  ""]  # fmt: skip
    path = workdir / "soak.toml"
    path.write_text("\n".join(lines))
    return path


class _Server:
    """The impulse server on a fixed port, started again after each kill; its impulses go into ``record``."""

    def __init__(self, options: SoakOptions, port: int, record: Record, workdir: Path) -> None:
        self.options, self.port, self.record, self.workdir = options, port, record, workdir
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.url = f"rtsp://127.0.0.1:{port}/impulse"

    async def start(self) -> None:
        width, height = self.options.size
        with (self.workdir / "server.log").open("a") as log:
            self.proc = await asyncio.create_subprocess_exec(
                SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--path", "/impulse", "--width",
                str(width), "--height", str(height), "--interval", str(self.options.interval), "--jitter", "0.5",
                "--box", "--audio-frame-ms", str(self.options.audio_frame_ms),
                stdout=asyncio.subprocess.PIPE, stderr=log,
            )  # fmt: skip
        assert self.proc.stdout is not None
        async with asyncio.timeout(20):
            ready = (await self.proc.stdout.readline()).decode()
        if not ready.startswith("READY "):
            raise RuntimeError(f"the impulse server did not start: {ready!r}")
        self._reader = asyncio.create_task(self._read(self.proc.stdout))

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        async for raw in stdout:
            with contextlib.suppress(ValueError, KeyError):
                item = json.loads(raw)
                self.record.impulses.append(min(float(item["video_wall"]), float(item["audio_wall"])))

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


async def _subscribe(broker: MqttBroker, record: Record, connected: asyncio.Event) -> None:
    """A persistent session (the broker, which saves it on disk, keeps its QoS 1 messages while it is away, and
    across its own restarts), reconnecting for ever."""
    while True:
        try:
            async with aiomqtt.Client(broker.host, broker.port, identifier=SUBSCRIBER, clean_session=False) as client:
                await client.subscribe(f"{PREFIX}/#", qos=1)
                connected.set()
                async for message in client.messages:
                    _on_message(record, str(message.topic), message.payload)
        except aiomqtt.MqttError:
            record.subscriber_reconnects += 1
            connected.clear()
            await asyncio.sleep(0.5)


def _on_message(record: Record, topic: str, payload: Any) -> None:
    now = time.time()
    parts = topic.split("/")
    if not isinstance(payload, bytes):
        return
    if parts[-1] == "status" and len(parts) == 3:
        record.statuses.append((now, parts[1], payload.decode(errors="replace")))
    elif parts[-1] == "events" and (len(parts) == 3 or (len(parts) == 5 and parts[2] == "zones")):
        try:
            message = json.loads(payload)
        except ValueError:
            return
        key = (parts[1] if len(parts) == 3 else f"{parts[1]}/{parts[3]}", str(message.get("id")))
        if message.get("type") == "start":
            if len(parts) == 3:
                record.starts.setdefault(key, []).append(now)
            else:
                record.zone_starts.add(key)
        elif message.get("type") == "end":
            record.ends.add(key)


async def _watch_view(base: str, record: Record) -> None:
    """A browser's live view, reconnecting when dropped."""
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(base + "/api/live", timeout=aiohttp.ClientTimeout(sock_read=30)) as r:
                    if r.status == 200:
                        record.view["connects"] += 1
                        async for line in r.content:
                            if line.startswith(b"data:"):
                                record.view["messages"] += 1
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(1.0)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _sample(pid: int, at: float) -> dict[str, Any]:
    out: dict[str, Any] = {"t": round(at, 1), "analyzer_rss_mb": 0.0, "ingest_rss_mb": 0.0, "fds": 0, "threads": 0,
                           "processes": 0}  # fmt: skip
    tree = _tree(pid)
    out["processes"] = len(tree)
    for i, proc in enumerate(tree):
        with contextlib.suppress(psutil.Error), proc.oneshot():
            rss = proc.memory_info().rss / 2**20
            out["fds"] += proc.num_fds()
            out["threads"] += proc.num_threads()
            out["analyzer_rss_mb" if i == 0 else "ingest_rss_mb"] += rss
    out["analyzer_rss_mb"] = round(out["analyzer_rss_mb"], 1)
    out["ingest_rss_mb"] = round(out["ingest_rss_mb"], 1)
    return out


async def _scrape_events(url: str) -> dict[str, float]:
    """The analyzer's own count of events started, per stream."""
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    return {s.labels["stream"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "streamer_stream_events_total"}  # fmt: skip


async def run_soak(
    options: SoakOptions, workdir: Path, *, say: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    record = Record()
    broker = MqttBroker(workdir / "mosquitto", extra_config=[
        "persistence true", f"persistence_location {workdir}/", "max_queued_messages 1000000",
        "autosave_interval 60"])  # fmt: skip
    broker.start()
    server = _Server(options, free_port(), record, workdir)
    tasks: list[asyncio.Task[Any]] = []
    analyzer: asyncio.subprocess.Process | None = None
    connected = asyncio.Event()
    try:
        await server.start()
        tasks.append(asyncio.create_task(_subscribe(broker, record, connected)))
        async with asyncio.timeout(20):
            await connected.wait()
        ui, metrics = free_port(), free_port()
        config = _config(options, workdir, server.url, broker, ui, metrics)
        with (workdir / "analyzer.log").open("w") as log:
            analyzer = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pipelines.cli.main", "run", "--config", str(config), "--stats-interval",
                "10", "-q", stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        if options.ui:
            tasks.append(asyncio.create_task(_watch_view(f"http://127.0.0.1:{ui}", record)))
        start = time.monotonic()
        wall_start = time.time()
        next_broker, next_rtsp, next_sample = options.broker_every, options.rtsp_every, 0.0
        while (elapsed := time.monotonic() - start) < options.minutes * 60:
            if analyzer.returncode is not None:
                break
            if elapsed >= next_sample:
                record.samples.append(_sample(analyzer.pid, elapsed))
                say(f"{elapsed:6.0f} s  {record.samples[-1]}  starts {len(record.starts)}")
                next_sample += options.sample
            if elapsed >= next_broker:
                next_broker += options.broker_every
                at = time.time()
                await asyncio.to_thread(broker.stop)
                await asyncio.sleep(options.down)
                await asyncio.to_thread(broker.start)
                record.outages.append({"kind": "broker", "at": at, "back": time.time()})
                say(f"{elapsed:6.0f} s  broker restarted")
            if elapsed >= next_rtsp:
                next_rtsp += options.rtsp_every
                at = time.time()
                await server.kill()
                await asyncio.sleep(options.down)
                await server.start()
                record.outages.append({"kind": "rtsp", "at": at, "back": time.time()})
                say(f"{elapsed:6.0f} s  RTSP server restarted")
            await asyncio.sleep(0.5)
        stayed_up = analyzer.returncode is None
        # the outbox drained: no new start for a while (at most a minute)
        detected: dict[str, float] = {}
        if stayed_up:
            await server.kill()  # no more impulses: the counts hold still while the outbox drains
            quiet_since, seen = time.monotonic(), len(record.starts)
            with contextlib.suppress(TimeoutError):  # a loss never drains: it is reported, not raised
                async with asyncio.timeout(120):
                    while time.monotonic() - quiet_since < 3 * options.interval:
                        await asyncio.sleep(1.0)
                        if len(record.starts) != seen:
                            seen, quiet_since = len(record.starts), time.monotonic()
                        with contextlib.suppress(aiohttp.ClientError):
                            detected = await _scrape_events(f"http://127.0.0.1:{metrics}/metrics")
                        received = sum(1 for (s, _) in record.starts if s in detected)
                        if detected and received >= sum(detected.values()):
                            break
            with contextlib.suppress(aiohttp.ClientError):
                detected = await _scrape_events(f"http://127.0.0.1:{metrics}/metrics")
        analyzer.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            code = await analyzer.wait()
        await asyncio.sleep(2.0)  # the last ends reach the subscriber
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if analyzer is not None and analyzer.returncode is None:
            for proc in reversed(_tree(analyzer.pid)):  # its ingest processes too
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            await analyzer.wait()
        await server.kill()
        broker.stop()
    return _report(options, record, detected, stayed_up, code, wall_start)


def _report(options: SoakOptions, record: Record, detected: dict[str, float], stayed_up: bool, code: int,
            wall_start: float) -> dict[str, Any]:  # fmt: skip
    after = [s for s in record.samples if s["t"] >= options.warmup] or record.samples[-1:]
    base, last = after[0], after[-1]

    def growth(key: str) -> float:
        return round(100 * (last[key] - base[key]) / base[key], 2) if base[key] else float("nan")

    streams = [f"s{i}" for i in range(options.streams)] + (["yard"] if options.file else [])
    per_stream = {s: {"detected": int(detected.get(s, 0)),
                      "delivered": sum(1 for (x, _) in record.starts if x == s)} for s in streams}  # fmt: skip
    duplicates = sum(len(r) - 1 for r in record.starts.values())
    unended = [k for k in record.starts if k not in record.ends]
    followed, outages = _statuses(options, record)
    latencies = _latencies(options, record)
    return {
        "options": asdict(options),
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(wall_start)),
        "stayed_up": stayed_up,
        "exit_code": code,
        "rss": {"analyzer_after_warmup_mb": base["analyzer_rss_mb"], "analyzer_final_mb": last["analyzer_rss_mb"],
                "analyzer_growth_pct": growth("analyzer_rss_mb"), "ingest_after_warmup_mb": base["ingest_rss_mb"],
                "ingest_final_mb": last["ingest_rss_mb"], "ingest_growth_pct": growth("ingest_rss_mb")},
        "fds": {"after_warmup": base["fds"], "final": last["fds"], "min": min(s["fds"] for s in after),
                "max": max(s["fds"] for s in after)},
        "threads": {"after_warmup": base["threads"], "final": last["threads"],
                    "min": min(s["threads"] for s in after), "max": max(s["threads"] for s in after)},
        "processes": {"min": min(s["processes"] for s in after), "max": max(s["processes"] for s in after)},
        "events": {"detected": int(sum(detected.values())), "delivered": len(record.starts),
                   "lost": int(sum(max(0, v["detected"] - v["delivered"]) for v in per_stream.values())),
                   "duplicates": duplicates, "without_end": len(unended), "zone_starts": len(record.zone_starts),
                   "impulses": len(record.impulses)},
        "per_stream": per_stream,
        "outages": {"broker": sum(o["kind"] == "broker" for o in record.outages),
                    "rtsp": outages, "statuses_followed": followed},
        "latency_ms": latencies,
        "view": record.view,
        "subscriber_reconnects": record.subscriber_reconnects,
        "samples": record.samples,
    }  # fmt: skip


def _statuses(options: SoakOptions, record: Record) -> tuple[int, int]:
    """(streams x RTSP outages whose statuses left online and came back to it, RTSP outages)."""
    followed = 0
    rtsp = [o for o in record.outages if o["kind"] == "rtsp"]
    for outage in rtsp:
        for i in range(options.streams):
            seen = [st for t, s, st in record.statuses if s == f"s{i}" and outage["at"] <= t <= outage["back"] + 60]
            if any(st != "online" for st in seen) and "online" in seen[[st != "online" for st in seen].index(True) :]:
                followed += 1
    return followed, len(rtsp)


def _latencies(options: SoakOptions, record: Record) -> dict[str, Any]:
    """Impulse to event start, for each stream's start within ``down`` + 5 s of an impulse: all of them, and
    those of impulses away from the broker's outages (``[at - 1 s, back + 10 s]``, when events wait in the
    outbox)."""
    glass = np.sort(np.array(record.impulses))
    away = [(o["at"] - 1.0, o["back"] + 10.0) for o in record.outages if o["kind"] == "broker"]
    every: list[float] = []
    calm: list[float] = []
    for (stream, _), receipts in record.starts.items():
        i = int(np.searchsorted(glass, receipts[0])) - 1
        if stream == "yard" or i < 0 or receipts[0] - glass[i] > options.down + 5.0:
            continue
        every.append(1000 * (receipts[0] - glass[i]))
        if not any(a <= glass[i] <= b for a, b in away):
            calm.append(every[-1])

    def figures(values: list[float]) -> dict[str, Any]:
        if not values:
            return {"n": 0}
        array = np.array(values)
        return {"n": int(array.size), "p50": round(float(np.percentile(array, 50)), 1),
                "p99": round(float(np.percentile(array, 99)), 1), "max": round(float(array.max()), 1)}  # fmt: skip

    return figures(every) | {"away_from_broker_outages": figures(calm)}


def brief(report: dict[str, Any]) -> str:
    r = report
    calm = r["latency_ms"].get("away_from_broker_outages", {})
    return (f"{r['options']['streams']} streams, {r['options']['minutes']:g} min: stayed up {r['stayed_up']}; "
            f"RSS analyzer {r['rss']['analyzer_growth_pct']:+.2f}%, ingest {r['rss']['ingest_growth_pct']:+.2f}% "
            f"after warm-up; fds {r['fds']['after_warmup']}->{r['fds']['final']} (max {r['fds']['max']}), threads "
            f"{r['threads']['after_warmup']}->{r['threads']['final']}; events detected {r['events']['detected']}, "
            f"delivered {r['events']['delivered']}, lost {r['events']['lost']}, duplicates "
            f"{r['events']['duplicates']}, without end {r['events']['without_end']}; outages: broker "
            f"{r['outages']['broker']}, RTSP {r['outages']['rtsp']} (statuses followed "
            f"{r['outages']['statuses_followed']} of {r['outages']['rtsp'] * r['options']['streams']}); latency "
            f"p50 {r['latency_ms'].get('p50')} p99 {r['latency_ms'].get('p99')} ms (away from the broker's outages "
            f"p50 {calm.get('p50')} p99 {calm.get('p99')} ms)")  # fmt: skip


def main() -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    defaults = SoakOptions()
    for name in ("streams", "minutes", "warmup", "broker_every", "rtsp_every", "down", "interval"):
        value = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    options = SoakOptions(**{k: v for k, v in vars(args).items() if k != "json"})
    with tempfile.TemporaryDirectory(prefix="streamer-soak-") as tmp:
        report = asyncio.run(run_soak(options, Path(tmp), say=lambda line: print(line, file=sys.stderr, flush=True)))
    print(brief(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    ok = report["stayed_up"] and report["events"]["lost"] == 0 and report["rss"]["analyzer_growth_pct"] < 5
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
