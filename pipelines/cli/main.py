"""The ``streamer`` command: ``probe``, ``run``, ``demo``, ``bench``, and ``calibrate``, ``train``, ``evaluate``.

Heavy imports (torch) stay out of this module so ``--help`` and ``probe`` are fast. Errors a user can cause are
one line on stderr (``streamer: error: ...``) and a documented exit code (:mod:`streamer.errors`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipelines.config import (
    DEFAULT_MQTT_URL,
    MODEL_KEYS,
    STREAM_KEYS,
    AnalyzerConfig,
    ModelConfig,
    build_config,
    load_toml,
    size,
    stream_config,
    take,
)
from streamer.errors import EXIT_OK, ConfigError, StreamerError
from streamer.media import StateChange
from streamer.spec import parse_source

log = logging.getLogger("streamer")

SOURCE_HELP = (
    "[NAME=]URI: a file (mp4, mkv, ts, webm, ...), rtsp:// rtsps:// rtmp:// http(s):// srt:// udp:// URL, "
    "camera:N or /dev/videoN (?audio=alsa:hw:1,0), or synthetic:?events=av@4,a@9,v@14&duration=20"
)
DEMO_SOURCE = "synthetic:?events=av@4,a@9,v@14&duration=20"


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _positive(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _size(text: str) -> tuple[int, int]:
    try:
        return size("--size", text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Source and analysis flags; each left at None unless given, so a config file's values show through."""
    group = parser.add_argument_group("sources")
    group.add_argument("--hop-ms", type=_positive, help="timestep length in ms (default 100)")
    group.add_argument("--realtime", action="store_true", default=None, help="pace files at their native rate")
    group.add_argument("--loop", action="store_true", default=None, help="repeat files forever")
    group.add_argument("--rtsp-transport", choices=("tcp", "udp"), help="default tcp")
    group.add_argument("--low-latency", choices=("auto", "on", "off"),
                       help="demux/decode for latency (default auto: on for live sources)")  # fmt: skip
    group.add_argument("--fast-decode", choices=("auto", "on", "off"),
                       help="decode video without the deblocking filter (default auto: on for files, whose "
                            "snapshots are decoded again in full)")  # fmt: skip
    group.add_argument("--hwaccel", metavar="TYPE[:DEVICE]",
                       help="decode video on a hardware device: cuda, cuda:1, vaapi, ... or auto (the first that "
                            "opens); without it, or where it does not open, in software")  # fmt: skip
    group.add_argument("--av-option", type=_key_value, action="append", metavar="KEY=VALUE",
                       help="FFmpeg demuxer/protocol option, overrides the defaults (repeatable)")  # fmt: skip
    group.add_argument("--luma-size", metavar="WxH", help="analysis image size (default 160x90)")
    group.add_argument("--sample-rate", type=int, help="analysis audio rate (default 16000)")
    group.add_argument("--context-ms", type=_number, help="audio look-back per timestep (default 100)")
    group.add_argument("--sync-wait-ms", type=_number,
                       help="media time one track may lead before the other counts as missing (500)")  # fmt: skip
    group.add_argument("--stall-timeout", type=_positive, help="seconds without data before reconnecting (5)")
    group.add_argument("--ca-file", metavar="PEM",
                       help="https/rtsps/rtmps: CA bundle to verify servers with (default: the system's)")  # fmt: skip
    group.add_argument("--tls-insecure", action="store_true", default=None,
                       help="https/rtsps/rtmps sources: do not verify the server's certificate")  # fmt: skip
    group.add_argument("--video-track", type=int, metavar="N",
                       help="analyze the Nth video track, from 0 (default: the first decodable; -1: none)")  # fmt: skip
    group.add_argument("--audio-track", type=int, metavar="N",
                       help="analyze the Nth audio track, from 0 (default: the first decodable; -1: none)")  # fmt: skip


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def stream_flags(args: argparse.Namespace) -> dict[str, Any]:
    return _given({
        "hop_ms": args.hop_ms,
        "realtime": args.realtime,
        "loop": args.loop,
        "rtsp_transport": args.rtsp_transport,
        "low_latency": args.low_latency,
        "fast_decode": args.fast_decode,
        "hwaccel": args.hwaccel,
        "av_options": dict(args.av_option) if args.av_option else None,
        "sync_wait_ms": args.sync_wait_ms,
        "stall_timeout": args.stall_timeout,
        "ca_file": args.ca_file,
        "tls_insecure": args.tls_insecure,
        "video_track": args.video_track,
        "audio_track": args.audio_track,
        "alpha": getattr(args, "alpha", None),
        "beta": getattr(args, "beta", None),
        "threshold": getattr(args, "threshold", None),
        "min_gap": getattr(args, "min_gap", None),
        "min_duration": getattr(args, "min_duration", None),
    })  # fmt: skip


def model_flags(args: argparse.Namespace) -> dict[str, Any]:
    return _given({
        "luma_size": args.luma_size,
        "sample_rate": args.sample_rate,
        "context_ms": args.context_ms,
        "max_batch": getattr(args, "max_batch", None),
        "max_wait_ms": getattr(args, "max_wait_ms", None),
        "checkpoint": str(args.model) if getattr(args, "model", None) is not None else None,
    })  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamer", description="Real-time audio-video stream analyzer.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    probe = commands.add_parser("probe", help="describe a source; --timeline: one JSON line per timestep",
                                description="Describe a source as JSON; with --timeline, then one JSON line "
                                "per timestep (k, t, frames, samples, luma, rms_dbfs).")  # fmt: skip
    probe.add_argument("source", help=SOURCE_HELP)
    probe.add_argument("--timeline", action="store_true", help="print one JSON line per timestep")
    probe.add_argument("--seconds", type=_positive, help="stop after this much media time")
    add_source_arguments(probe)

    run = commands.add_parser("run", help="analyze streams: events (and scores) over MQTT",
                              description="Analyze streams and publish events over MQTT. Flags override the "
                              "config file.")  # fmt: skip
    run.add_argument("sources", nargs="*", metavar="SOURCE", help=SOURCE_HELP)
    run.add_argument("--config", type=Path, help="TOML file describing streams and the mqtt/model/device sections")
    add_analysis_arguments(run)
    add_source_arguments(run)

    demo = commands.add_parser("demo", help="analyze the built-in synthetic source and show its events live",
                               description="Analyze the built-in synthetic source (a burst of sound and motion at "
                               "4 s, sound at 9 s, motion at 14 s), publish over MQTT (starting an embedded "
                               "broker when none answers) and show the events as they arrive.")  # fmt: skip
    demo.add_argument("--source", default=DEMO_SOURCE, help=f"what to analyze (default {DEMO_SOURCE})")
    add_analysis_arguments(demo)
    add_source_arguments(demo)
    add_bench_parsers(commands)
    add_cluster_parsers(commands)
    learn = add_learn_parsers(commands)
    for sub in (probe, run, demo, *learn):
        _verbose_here_too(sub)
    return parser


LABELS_HELP = (
    "labeled recordings: a labels file (CSV or JSON lines: file, start, end[, label]) or a directory holding "
    "labels.csv or labels.jsonl; see README"
)
FUSIONS = ("weighted", "late", "mid", "attention")


def add_learn_parsers(commands: Any) -> list[argparse.ArgumentParser]:
    calibrate = commands.add_parser(
        "calibrate", help="fit alpha, beta and the threshold to labeled recordings (best event F1)",
        description="Score labeled recordings with the run-time model, fit alpha, beta >= 0 (alpha + beta = 1) and "
        "the event threshold for the best event-level F1, report timestep ROC-AUC, and print a config snippet "
        "(stdout is valid TOML: `streamer calibrate DATA > tuned.toml`).",
    )  # fmt: skip
    train = commands.add_parser(
        "train", help="train a fusion head on labeled recordings; `streamer run --model FILE` uses it",
        description="Train a fusion head over the per-timestep features of labeled recordings (Adam, early "
        "stopping on a validation split of the recordings), choose its event threshold on the validation "
        "recordings and save a checkpoint for `streamer run --model FILE` and `streamer evaluate --model FILE`.",
    )  # fmt: skip
    evaluate = commands.add_parser(
        "evaluate", help="event precision, recall, F1, timestep accuracy and ROC-AUC on labeled recordings",
        description="Detect events in labeled recordings as `streamer run` would (alpha, beta, threshold from flags "
        "and --config, or a trained --model) and report event-level precision, recall and F1 (IoU >= 0.3), "
        "timestep accuracy and ROC-AUC: a table, --json and a precision-recall --plot.",
    )  # fmt: skip
    for sub in (calibrate, train, evaluate):
        sub.add_argument("data", type=Path, metavar="DATA", help=LABELS_HELP)
        sub.add_argument("--config", type=Path, help="TOML file as for `streamer run` ([defaults], [model], [device])")
        sub.add_argument("--label", action="append", metavar="LABEL",
                         help="only events with this label count (repeatable; default: all)")  # fmt: skip
        sub.add_argument("--hop-ms", type=_positive, help="timestep length in ms (default 100)")
        sub.add_argument("--min-gap", type=_number, help="seconds below the threshold that end an event (0.3)")
        sub.add_argument("--min-duration", type=_number, help="shortest event reported, seconds (0)")
        sub.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
        sub.add_argument("--parallel", type=int, default=4, help="recordings decoded at once (default 4)")
        sub.add_argument("--json", type=Path, metavar="FILE", help="write the full report here")
    train.add_argument("--fusion", choices=FUSIONS, default="weighted",
                       help="weighted (learnable alpha, beta; default), late (product of per-modality "
                       "probabilities), mid (features concatenated into an MLP) or attention")  # fmt: skip
    train.add_argument("--out", type=Path, default=Path("fusion.pt"), help="checkpoint to write (fusion.pt)")
    train.add_argument("--epochs", type=int, default=2000, help="at most this many epochs (2000)")
    train.add_argument("--patience", type=int, default=100, help="stop after this many epochs without progress")
    train.add_argument("--lr", type=_positive, default=0.05, help="Adam's learning rate (0.05)")
    train.add_argument("--val-fraction", type=_positive, default=0.25, help="recordings kept for validation")
    train.add_argument("--seed", type=int, default=0, help="the split's and the initialization's seed (0)")
    evaluate.add_argument("--model", type=Path, metavar="FILE", help="a checkpoint made by `streamer train`")
    evaluate.add_argument("--alpha", type=_number, help="weight of S_v (default 0.5)")
    evaluate.add_argument("--beta", type=_number, help="weight of S_a (default 0.5)")
    evaluate.add_argument("--threshold", type=_number, help="event threshold on S (default 0.3, or the model's)")
    evaluate.add_argument("--plot", type=Path, metavar="FILE.png", help="precision-recall curves (PNG)")
    return [calibrate, train, evaluate]


def _verbose_here_too(parser: argparse.ArgumentParser) -> None:
    """``streamer run ... -v`` as well as ``streamer -v run ...``."""
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output")


def stream_counts(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected stream counts like 1,2,4,8, got {text!r}")
    return values


def add_cluster_parsers(commands: Any) -> None:
    cluster = commands.add_parser("cluster", help="spread streams over analyzer workers on a Ray cluster",
                                  description="Spread the streams of a config over analyzer workers on a Ray "
                                  "cluster (pip install -e '.[cluster]'). Same MQTT topics as run.")  # fmt: skip
    actions = cluster.add_subparsers(dest="cluster", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="place the streams on workers and keep them placed (Ctrl-C stops them)")
    run.add_argument("sources", nargs="*", metavar="SOURCE", help=SOURCE_HELP)
    run.add_argument("--config", type=Path, help="TOML file (re-read when it changes: streams added or removed)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--address", default=None,
                       help="the Ray cluster: auto (the local one started by `ray start`; default), HOST:PORT, "
                       "or ray://HOST:10001")  # fmt: skip
    where.add_argument("--local", type=int, metavar="N", help="start a Ray on this machine with N workers")
    run.add_argument("--workers-per-node", type=int, default=1, metavar="N", help="analyzer workers per node (1)")
    run.add_argument("--worker-cpus", type=float, default=1.0, metavar="C",
                     help="CPUs Ray reserves per worker (1); also its weight in placement")  # fmt: skip
    run.add_argument("--detach", action="store_true", help="exit once the streams are placed; workers go on")
    run.add_argument("--checkpoint-s", type=_positive, default=5.0, metavar="S",
                     help="seconds between the workers' checkpoints of each stream's model state (5)")  # fmt: skip
    add_analysis_arguments(run)
    add_source_arguments(run)
    for name, text in (("status", "the workers, their streams and load"), ("stop", "stop every worker")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--address", default="auto", help="the Ray cluster (default auto)")
        action.add_argument("--prefix", default="streamer", help="the site's topic prefix (default streamer)")
        if name == "status":
            action.add_argument("--json", action="store_true", help="print JSON")


def add_bench_parsers(commands: Any) -> None:
    bench = commands.add_parser("bench", help="latency, capacity and throughput benchmarks (see benchmarks/README.md)")
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    latency = kinds.add_parser(
        "latency", help="glass-to-event latency against a live RTSP server with impulses, over a real mosquitto",
        description="Glass-to-event latency: an RTSP server emits impulses (a white frame and a tone) at logged "
        "wall-clock times; `streamer run` analyzes the stream and publishes to mosquitto; a subscriber records "
        "when events arrive. A decode-only client on the same stream gives the floor. Needs Debian's "
        "gst-rtsp-server bindings and mosquitto (scripts/system-deps.sh).",
    )  # fmt: skip
    latency.add_argument("--streams", type=int, default=1, help="analyzer streams at once (default 1)")
    latency.add_argument("--impulses", type=int, default=50, help="impulses to measure (default 50)")
    latency.add_argument("--hop-ms", type=_positive, default=100.0, help="the analyzer's hop (default 100)")
    latency.add_argument("--max-wait-ms", type=_number, help="the batcher's max wait (default: the analyzer's)")
    latency.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    latency.add_argument("--hwaccel", metavar="TYPE", help="decode video on this hardware device (cuda, auto, ...)")
    latency.add_argument("--interval", type=_positive, default=2.0, help="seconds between impulses (2, +jitter)")
    latency.add_argument(
        "--impulse",
        choices=("flash", "box"),
        default="flash",
        help="flash: a white frame and a tone (heard only: a whole-picture flash is lighting); "
        "box: a white box over a quarter of the picture with the tone (seen and heard)",
    )
    latency.add_argument("--threshold", type=_number, help="the analyzer's event threshold (default: its own)")
    latency.add_argument("--size", type=_size, default=(640, 360), metavar="WxH", help="picture size (640x360)")
    latency.add_argument("--fps", type=int, default=30, help="frame rate (30)")
    latency.add_argument("--audio-frame-ms", type=int, default=10, choices=(10, 20, 40, 60),
                         help="Opus frame (packet) length (10)")  # fmt: skip
    latency.add_argument("--json", type=Path, metavar="FILE", help="write the report (p50, p95, p99, max) here")
    latency.add_argument("--plot", type=Path, metavar="FILE.png", help="latency CDF and stage breakdown (PNG)")
    latency.add_argument("--workdir", type=Path, help="keep the processes' logs here (default: a temp dir)")
    throughput = kinds.add_parser(
        "throughput", help="files analyzed as fast as possible with N streams, against decode-only",
        description="Media analyzed as fast as possible with N streams at once, against decode-only of the same "
        "media with the same N in the same run: timesteps/s, real-time factor, CPU share, peak memory, ratio.",
    )  # fmt: skip
    throughput.add_argument("media", nargs="*", type=Path, help="files (default: a generated 720p30 clip)")
    throughput.add_argument("--streams", type=stream_counts, default=[1, 2, 4, 8], help="counts, default 1,2,4,8")
    throughput.add_argument("--repeats", type=int, default=3, help="measurements per count (median; default 3)")
    throughput.add_argument("--seconds", type=_positive, default=20.0, help="length of the generated clip (20)")
    throughput.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    throughput.add_argument("--json", type=Path, metavar="FILE", help="write the report here")
    capacity = kinds.add_parser(
        "capacity", help="the most live streams analyzed within the latency budget, against decode-only",
        description="Live capacity: the largest N of RTSP streams the analyzer keeps up with (every impulse "
        "detected, added p99 <= hop + 80 ms) next to the largest N of decode-only clients that keep real time, "
        "measured in the same run with the latency benchmark's real processes; their ratio.",
    )  # fmt: skip
    capacity.add_argument("--size", type=_size, default=(640, 360), metavar="WxH", help="picture size (640x360)")
    capacity.add_argument("--fps", type=int, default=30, help="frame rate (30)")
    capacity.add_argument("--audio-frame-ms", type=int, default=10, choices=(10, 20, 40, 60),
                          help="Opus frame (packet) length (10)")  # fmt: skip
    capacity.add_argument("--impulses", type=int, default=8, help="impulses per probe (8)")
    capacity.add_argument("--start", type=int, default=8, help="first N tried (8); doubles, then bisects")
    capacity.add_argument("--limit", type=int, default=128, help="largest N tried (128)")
    capacity.add_argument("--step", type=int, default=4, help="resolution of the search in streams (4)")
    capacity.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    capacity.add_argument("--hwaccel", metavar="TYPE", help="decode video on this hardware device (cuda, auto, ...)")
    capacity.add_argument("--json", type=Path, metavar="FILE", help="write the report here")
    capacity.add_argument("--plot", type=Path, metavar="FILE.png", help="p99 against N per mode (PNG)")
    capacity.add_argument("--workdir", type=Path, help="keep the processes' logs here (default: a temp dir)")


def add_analysis_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("analysis and publishing")
    mqtt_help = (
        f"broker, mqtt://[USER[:PASS]@]HOST[:PORT] or mqtts://...; 'none' for no broker (default {DEFAULT_MQTT_URL}; "
        "credentials also from STREAMER_MQTT_USERNAME/PASSWORD)"
    )
    group.add_argument("--mqtt", metavar="URL", help=mqtt_help)
    group.add_argument("--prefix", help="topic prefix (default streamer)")
    group.add_argument("--alpha", type=_number, help="weight of video activity S_v (default 0.5)")
    group.add_argument("--beta", type=_number, help="weight of audio activity S_a (default 0.5)")
    group.add_argument("--threshold", type=_number, help="an event starts when S >= this (default 0.3)")
    group.add_argument("--min-gap", type=_number, help="seconds below the threshold that end an event (0.3)")
    group.add_argument("--min-duration", type=_number, help="shortest event reported, seconds (0)")
    group.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    group.add_argument("--max-batch", type=int, help="timesteps per model call across streams (64)")
    group.add_argument("--max-wait-ms", type=_number, help="how long a batch waits for more timesteps (5)")
    group.add_argument("--duration", type=_positive, help="stop each stream after this many media seconds")
    group.add_argument("--events-out", type=Path, metavar="FILE.jsonl", help="also append events to this file")
    group.add_argument("--scores", action="store_true", default=None, help="publish every timestep's scores")
    group.add_argument("--stats-interval", type=_positive, help="seconds between stats messages (10)")
    group.add_argument("--model", type=Path, metavar="FILE", help="a fusion model made by `streamer train`")
    group.add_argument("--homeassistant", action="store_true", default=None,
                       help="announce each stream to Home Assistant (MQTT discovery)")  # fmt: skip
    group.add_argument("--metrics", metavar="[HOST]:PORT",
                       help="serve Prometheus /metrics here (e.g. :9108; no host: all interfaces)")  # fmt: skip
    group.add_argument("--ui", metavar="[HOST]:PORT",
                       help="serve the live web view here (e.g. :8080; no host: localhost only)")  # fmt: skip
    group.add_argument("-q", "--quiet", action="store_true", help="no event lines or progress on the terminal")


def analyzer_config(args: argparse.Namespace, sources: list[str], file: Path | None = None) -> AnalyzerConfig:
    return build_config(
        load_toml(file) if file is not None else None,
        sources=sources,
        stream_flags=stream_flags(args),
        mqtt_flags=_given(
            {"url": args.mqtt, "prefix": args.prefix, "scores": args.scores, "stats_interval": args.stats_interval}
        ),
        model_flags=model_flags(args),
        device=args.device,
        duration=args.duration,
        events_out=args.events_out,
        extra_flags=_given({"metrics": args.metrics, "ui": args.ui, "discovery": args.homeassistant}),
    )


def _print_state(change: StateChange) -> None:
    detail = f": {change.detail}" if change.detail else ""
    retry = f" (retry in {change.retry_in:.1f} s)" if change.retry_in is not None else ""
    log.info("stream '%s' %s%s%s", change.stream_id, change.state.value, detail, retry)


async def _probe(args: argparse.Namespace) -> int:
    from pipelines.cli.probe import probe

    spec = parse_source(args.source)
    model = ModelConfig(**take(model_flags(args), "", MODEL_KEYS))
    stream = stream_config(spec, take(stream_flags(args), "", STREAM_KEYS) | {"fail_fast": True}, model)
    await probe(spec, stream.source, stream.sync, timeline=args.timeline, seconds=args.seconds, on_state=_print_state)
    return EXIT_OK


async def _run(args: argparse.Namespace) -> int:
    import importlib

    from pipelines.cli.terminal import Terminal
    from streamer.ingest import IngestHub

    config = analyzer_config(args, args.sources, args.config)
    stop = asyncio.Event()
    _on_signals(stop.set)  # until the analyzer exists
    hub = IngestHub([sc.ingest() for sc in config.streams]) if config.ingest == "process" else None
    try:
        if hub is not None:  # files' ingest processes open and start decoding while torch loads (~2-3 s)
            await hub.start(live=False)
        await asyncio.to_thread(importlib.import_module, "pipelines.analyzer")  # the loop serves the hub meanwhile
        from pipelines.analyzer import Analyzer, Hooks

        terminal = Terminal(config, quiet=args.quiet)
        hooks = Hooks(on_event=terminal.event, on_progress=terminal.progress, on_state=_print_state)
        analyzer = Analyzer(config, hooks, hub=hub)
        _on_signals(analyzer.stop)
        if stop.is_set():
            analyzer.stop()
        terminal.start(analyzer)
        summary = await analyzer.run()
    finally:
        if hub is not None:
            await hub.close()  # run() closed it, unless it failed before
    terminal.finish(summary)
    return summary.exit_code


async def _demo(args: argparse.Namespace) -> int:
    from pipelines.cli.demo import demo

    config = analyzer_config(args, [args.source])
    if args.mqtt is None and config.mqtt.url is not None:
        config = replace(config, mqtt=replace(config.mqtt, url=DEFAULT_MQTT_URL))
    return await demo(config, on_signals=_on_signals, on_state=_print_state)


async def _bench_report(args: argparse.Namespace, run: Any, options: Any, table: Any, plot: Any) -> dict[str, Any]:
    """A live benchmark (latency, capacity): run it in ``--workdir`` or a temporary one, print its table, plot it."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="streamer-bench-") as tmp:
        report: dict[str, Any] = await run(
            options, args.workdir or Path(tmp), say=lambda text: print(f"bench: {text}", file=sys.stderr)
        )
    print(table(report))
    if args.plot is not None:
        plot(report, args.plot)
    return report


async def _bench(args: argparse.Namespace) -> int:
    import json

    if getattr(args, "hwaccel", None) is not None:
        from streamer.hwaccel import check

        try:
            args.hwaccel = check(args.hwaccel)
        except ValueError as exc:
            raise ConfigError(f"bench {args.bench}: --{exc}") from None
    if args.bench == "throughput":
        from pipelines.bench.throughput import format_table, run_throughput

        report = await asyncio.to_thread(
            run_throughput, args.media or None, args.streams, repeats=args.repeats, device=args.device,
            seconds=args.seconds,
        )  # fmt: skip
        print(format_table(report))
    elif args.bench == "capacity":
        from pipelines.bench.capacity import CapacityOptions, format_capacity, plot_capacity, run_capacity

        if min(args.start, args.limit, args.step, args.impulses, args.fps) < 1:
            raise ConfigError("bench capacity: --start, --limit, --step, --impulses and --fps must be >= 1")
        cap = CapacityOptions(width=args.size[0], height=args.size[1], fps=args.fps,
                              audio_frame_ms=args.audio_frame_ms, impulses=args.impulses, start=args.start,
                              limit=args.limit, step=args.step, device=args.device,
                              hwaccel=args.hwaccel)  # fmt: skip
        report = await _bench_report(args, run_capacity, cap, format_capacity, plot_capacity)
    else:
        from pipelines.bench.latency import LatencyOptions, format_report, plot_report, run_latency

        options = LatencyOptions(streams=args.streams, impulses=args.impulses, hop_ms=args.hop_ms,
                                 max_wait_ms=args.max_wait_ms, device=args.device, interval=args.interval,
                                 impulse=args.impulse, threshold=args.threshold, width=args.size[0],
                                 height=args.size[1], fps=args.fps, audio_frame_ms=args.audio_frame_ms,
                                 hwaccel=args.hwaccel)  # fmt: skip
        report = await _bench_report(args, run_latency, options, format_report, plot_report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return EXIT_OK


async def _calibrate(args: argparse.Namespace) -> int:
    from pipelines.learn.commands import calibrate_command

    return await calibrate_command(args)


async def _train(args: argparse.Namespace) -> int:
    from pipelines.learn.commands import train_command

    return await train_command(args)


async def _evaluate(args: argparse.Namespace) -> int:
    from pipelines.learn.commands import evaluate_command

    return await evaluate_command(args)


async def _cluster(args: argparse.Namespace) -> int:
    from pipelines.cluster.commands import cluster_command

    return await cluster_command(args)


def _on_signals(stop: Any) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    if args.command == "probe" and args.timeline:
        level = min(level, logging.INFO)  # show reconnects while watching a timeline
    logging.basicConfig(level=level, format="streamer: %(message)s", stream=sys.stderr)
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    command = {"probe": _probe, "run": _run, "demo": _demo, "bench": _bench, "calibrate": _calibrate,
               "train": _train, "evaluate": _evaluate, "cluster": _cluster}[args.command]  # fmt: skip
    try:
        return asyncio.run(command(args))
    except StreamerError as exc:
        log.error("error: %s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


__all__ = ["ConfigError", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
