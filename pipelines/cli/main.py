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

from pipelines.bench.options import CapacityOptions, LatencyOptions, ThroughputOptions
from pipelines.cluster.options import EXCLUSIVE, ClusterOptions
from pipelines.config import configure
from pipelines.flags import add_arguments, add_setting_flags, analyzer_config, flag_values, values_from
from pipelines.learn.options import LearnOptions, TrainOptions
from streamer.demo_scene import DEMO_SOURCE
from streamer.errors import EXIT_OK, ConfigError, StreamerError
from streamer.media import StateChange
from streamer.settings import output_file, settings_of

log = logging.getLogger("streamer")

SOURCE_HELP = (
    "[NAME=]URI: a file (mp4, mkv, ts, webm, ...), rtsp:// rtsps:// rtmp:// http(s):// udp:// URL, "
    f"camera:N or /dev/videoN (?audio=alsa:hw:1,0), or {DEMO_SOURCE}"
)
OUTPUTS = ("json", "plot", "out")  # flags naming a file a command writes (when a Path): checked before any work


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


def _leaf(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A command's own parser: its usage is what a mistyped flag shows (see :func:`parse_args`)."""
    parser.set_defaults(usage_of=parser)
    return parser


def _quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no event lines or progress on the terminal")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamer", description="Real-time audio-video stream analyzer.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    probe = _leaf(commands.add_parser("probe", help="describe a source; --timeline: one JSON line per timestep",
                                description="Describe a source as JSON; with --timeline, then one JSON line "
                                "per timestep (k, t, frames, samples, luma, rms_dbfs)."))  # fmt: skip
    probe.add_argument("source", help=SOURCE_HELP)
    probe.add_argument("--timeline", action="store_true", help="print one JSON line per timestep")
    probe.add_argument("--seconds", type=_positive, help="stop after this much media time")
    add_arguments(probe, "probe")

    run = _leaf(commands.add_parser("run", help="analyze streams: events (and scores) over MQTT",
                              description="Analyze streams and publish events over MQTT. Flags override the "
                              "config file."))  # fmt: skip
    run.add_argument("sources", nargs="*", metavar="SOURCE", help=SOURCE_HELP)
    run.add_argument("--config", type=Path, help="TOML file describing streams and the mqtt/model/device sections")
    add_arguments(run, "run")
    _quiet(run)

    demo = _leaf(commands.add_parser("demo", help="analyze the built-in synthetic source and show its events live",
                               description="Analyze the built-in synthetic source (a burst of sound and motion at "
                               "4 s, sound at 9 s, motion at 14 s), publish over MQTT (starting an embedded "
                               "broker when none answers) and show the events as they arrive."))  # fmt: skip
    demo.add_argument("--source", default=DEMO_SOURCE, help=f"what to analyze (default {DEMO_SOURCE})")
    add_arguments(demo, "demo")
    _quiet(demo)
    add_bench_parsers(commands)
    add_cluster_parsers(commands)
    learn = add_learn_parsers(commands)
    for sub in (probe, run, demo, *learn):
        _verbose_here_too(sub)
    return parser


LABELS_HELP = (
    "labeled recordings: a labels file (CSV or JSON lines: file, start, end[, label]) or a directory holding "
    "labels.csv or labels.jsonl; see docs/learn.md"
)


LEARN_COMMANDS = {
    "calibrate": (
        "fit alpha, beta and the threshold to labeled recordings (best event F1)",
        "Score labeled recordings with the run-time model, fit alpha, beta >= 0 (alpha + beta = 1) and the event "
        "threshold for the best event-level F1, report timestep ROC-AUC, and print a config snippet (stdout is "
        "valid TOML: `streamer calibrate DATA > tuned.toml`).",
    ),
    "train": (
        "train a fusion head on labeled recordings; `streamer run --model FILE` uses it",
        "Train a fusion head over the per-timestep features of labeled recordings (Adam, early stopping on a "
        "validation split of the recordings), choose its event threshold on the validation recordings and save a "
        "checkpoint for `streamer run --model FILE` and `streamer evaluate --model FILE`.",
    ),
    "evaluate": (
        "event precision, recall, F1, timestep accuracy and ROC-AUC on labeled recordings",
        "Detect events in labeled recordings as `streamer run` would (alpha, beta, threshold from flags and "
        "--config, or a trained --model) and report event-level precision, recall and F1 (IoU >= 0.3), timestep "
        "accuracy and ROC-AUC: a table, --json and a precision-recall --plot.",
    ),
}


def add_learn_parsers(commands: Any) -> list[argparse.ArgumentParser]:
    parsers = {
        name: _leaf(commands.add_parser(name, help=short, description=long))
        for name, (short, long) in LEARN_COMMANDS.items()
    }
    for name, sub in parsers.items():
        sub.add_argument("data", type=Path, metavar="DATA", help=LABELS_HELP)
        sub.add_argument("--config", type=Path, help="TOML file as for `streamer run` ([defaults], [model], [device])")
        sub.add_argument("--label", action="append", metavar="LABEL",
                         help="only events with this label count (repeatable; default: all)")  # fmt: skip
        add_arguments(sub, name)
        add_setting_flags(sub, LearnOptions, name)
        sub.add_argument("--json", type=Path, metavar="FILE", help="write the full report here")
    add_setting_flags(parsers["train"], TrainOptions, "train")
    parsers["evaluate"].add_argument("--plot", type=Path, metavar="FILE.png", help="precision-recall curves (PNG)")
    return list(parsers.values())


def _verbose_here_too(parser: argparse.ArgumentParser) -> None:
    """``streamer run ... -v`` as well as ``streamer -v run ...``."""
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output")


def add_cluster_parsers(commands: Any) -> None:
    cluster = commands.add_parser("cluster", help="spread streams over analyzer workers on a Ray cluster",
                                  description="Spread the streams of a config over analyzer workers on a Ray "
                                  "cluster (pip install -e '.[cluster]'). Same MQTT topics as run.")  # fmt: skip
    actions = cluster.add_subparsers(dest="cluster", required=True, metavar="ACTION")
    placed = "place the streams on workers and keep them placed (Ctrl-C stops them)"
    run = _leaf(actions.add_parser("run", help=placed))
    run.add_argument("sources", nargs="*", metavar="SOURCE", help=SOURCE_HELP)
    run.add_argument("--config", type=Path, help="TOML file (re-read when it changes: streams added or removed)")
    own = settings_of(ClusterOptions)
    add_setting_flags(run.add_mutually_exclusive_group(), [s for s in own if s.name in EXCLUSIVE], "cluster run")
    add_setting_flags(run, [s for s in own if s.name not in EXCLUSIVE], "cluster run")
    add_arguments(run, "cluster run")
    for name, text in (("status", "the workers, their streams and load"), ("stop", "stop every worker")):
        action = _leaf(actions.add_parser(name, help=text, description=f"{text[0].upper()}{text[1:]} of the site "
                                          "that `cluster run` placed with the same config file (its MQTT prefix "
                                          "names the site)."))  # fmt: skip
        add_setting_flags(action, ClusterOptions, f"cluster {name}")
        action.add_argument("--config", type=Path, help="the TOML file given to `cluster run` (its [mqtt] table)")
        add_arguments(action, f"cluster {name}")
        if name == "status":
            action.add_argument("--json", action="store_true", help="print JSON")


def add_bench_parsers(commands: Any) -> None:
    """``streamer bench latency|throughput|capacity``: each one's settings are flags made from its options
    (:mod:`pipelines.bench.options`); here only the files it reads and writes."""
    bench = commands.add_parser("bench", help="latency, capacity and throughput benchmarks (see benchmarks/README.md)")
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for name, (options, short, long, json_help, plot_help) in BENCH_COMMANDS.items():
        sub = _leaf(kinds.add_parser(name, help=short, description=long))
        if name == "throughput":
            sub.add_argument("media", nargs="*", type=Path, help="files (default: a generated 720p30 clip)")
        add_setting_flags(sub, options, f"bench {name}")
        sub.add_argument("--json", type=Path, metavar="FILE", help=json_help)
        if plot_help is not None:  # the live benchmarks: a plot, and the logs of their processes
            sub.add_argument("--plot", type=Path, metavar="FILE.png", help=plot_help)
            sub.add_argument("--workdir", type=Path, help="keep the processes' logs here (default: a temp dir)")


BENCH_COMMANDS: dict[str, tuple[type, str, str, str, str | None]] = {  # options, help, description, --json, --plot
    "latency": (
        LatencyOptions,
        "glass-to-event latency against a live RTSP server with impulses, over a real mosquitto",
        "Glass-to-event latency: an RTSP server emits impulses (a white frame and a tone) at logged wall-clock "
        "times; `streamer run` analyzes the stream and publishes to mosquitto; a subscriber records when events "
        "arrive. A decode-only client on the same stream gives the floor. Needs Debian's gst-rtsp-server bindings "
        "and mosquitto (scripts/system-deps.sh).",
        "write the report (p50, p95, p99, max) here",
        "latency CDF and stage breakdown (PNG)",
    ),
    "throughput": (
        ThroughputOptions,
        "files analyzed as fast as possible with N streams, against decode-only",
        "Media analyzed as fast as possible with N streams at once, against decode-only of the same media with the "
        "same N in the same run: timesteps/s, real-time factor, CPU share, peak memory, ratio.",
        "write the report here",
        None,
    ),
    "capacity": (
        CapacityOptions,
        "the most live streams analyzed within the latency budget, against decode-only",
        "Live capacity: the largest N of RTSP streams the analyzer keeps up with (every impulse detected, added "
        "p99 <= hop + 80 ms) next to the largest N of decode-only clients that keep real time, measured in the "
        "same run with the latency benchmark's real processes; their ratio.",
        "write the report here",
        "p99 against N per mode (PNG)",
    ),
}


def _print_state(change: StateChange) -> None:
    detail = f": {change.detail}" if change.detail else ""
    retry = f" (retry in {change.retry_in:.1f} s)" if change.retry_in is not None else ""
    log.info("stream '%s' %s%s%s", change.stream_id, change.state.value, detail, retry)


async def _probe(args: argparse.Namespace) -> int:
    from pipelines.cli.probe import probe

    (stream,) = configure(None, sources=[args.source], flags=flag_values(args, "probe")).streams
    source = replace(stream.source, fail_fast=True)
    await probe(stream.spec, source, stream.sync, timeline=args.timeline, seconds=args.seconds, on_state=_print_state)
    return EXIT_OK


async def _run(args: argparse.Namespace) -> int:
    import importlib

    from pipelines.cli.terminal import Terminal
    from streamer.ingest import IngestHub

    config = analyzer_config(args, args.sources, args.config)
    stop = asyncio.Event()
    _on_signals(stop.set)  # until the analyzer exists
    hub = IngestHub([config.ingest_stream(sc) for sc in config.streams]) if config.ingest == "process" else None
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

    return await demo(analyzer_config(args, [args.source]), on_signals=_on_signals, on_state=_print_state)


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

        throughput = ThroughputOptions(**values_from(args, ThroughputOptions))
        report = await asyncio.to_thread(run_throughput, args.media or None, throughput)
        print(format_table(report))
    elif args.bench == "capacity":
        from pipelines.bench.capacity import format_capacity, plot_capacity, run_capacity

        cap = CapacityOptions(**values_from(args, CapacityOptions))
        report = await _bench_report(args, run_capacity, cap, format_capacity, plot_capacity)
    else:
        from pipelines.bench.latency import format_report, plot_report, run_latency

        options = LatencyOptions(**values_from(args, LatencyOptions))
        report = await _bench_report(args, run_latency, options, format_report, plot_report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return EXIT_OK


def check_outputs(args: argparse.Namespace) -> None:
    """Every file the command will write (``--json``, ``--plot``, ``--out``): its folder must exist and be
    writable before any work starts, or a typo would lose a run of minutes."""
    for name in OUTPUTS:
        value = getattr(args, name, None)
        if isinstance(value, Path):
            output_file(f"--{name}", value)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, where an unknown flag is reported with the usage of the command it was given to
    (``streamer run --thresold``: ``run``'s usage), not the top level's."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        getattr(args, "usage_of", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


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
    args = parse_args(build_parser(), argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    if args.command == "probe" and args.timeline:
        level = min(level, logging.INFO)  # show reconnects while watching a timeline
    logging.basicConfig(level=level, format="streamer: %(message)s", stream=sys.stderr)
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    command = {"probe": _probe, "run": _run, "demo": _demo, "bench": _bench, "calibrate": _calibrate,
               "train": _train, "evaluate": _evaluate, "cluster": _cluster}[args.command]  # fmt: skip
    try:
        check_outputs(args)
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
