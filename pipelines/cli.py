"""The ``streamer`` command. Heavy imports (torch) stay out of this module so ``--help`` and ``probe`` are fast."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from streamer.errors import ConfigError, StreamerError
from streamer.media import StateChange
from streamer.options import SourceOptions
from streamer.spec import parse_source
from streamer.sync import SyncOptions

log = logging.getLogger("streamer")

SOURCE_HELP = (
    "[NAME=]URI: a file (mp4, mkv, ts, webm, ...), rtsp:// rtsps:// rtmp:// http(s):// srt:// udp:// URL, "
    "camera:N or /dev/videoN (?audio=alsa:hw:1,0), or synthetic:?events=av@4,a@9,v@14&duration=20"
)


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 160x90, got {text!r}")
    return int(width), int(height)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sources")
    group.add_argument("--hop-ms", type=_positive, default=100.0, help="timestep length in ms (default 100)")
    group.add_argument("--realtime", action="store_true", help="pace files at their native rate")
    group.add_argument("--loop", action="store_true", help="repeat files forever")
    group.add_argument("--rtsp-transport", choices=("tcp", "udp"), default="tcp", help="default tcp")
    group.add_argument("--low-latency", choices=("auto", "on", "off"), default="auto",
                       help="demux/decode for latency (default: on for live sources)")  # fmt: skip
    group.add_argument("--av-option", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="FFmpeg demuxer/protocol option, overrides the defaults (repeatable)")  # fmt: skip
    group.add_argument("--luma-size", type=_size, default=(160, 90), metavar="WxH", help="default 160x90")
    group.add_argument("--sample-rate", type=int, default=16000, help="analysis audio rate (default 16000)")
    group.add_argument("--context-ms", type=float, default=100.0, help="audio look-back per timestep (100)")
    group.add_argument("--sync-wait-ms", type=float, default=500.0,
                       help="media time one track may lead before the other counts as missing (500)")  # fmt: skip
    group.add_argument("--stall-timeout", type=_positive, default=5.0, help="seconds without data (5)")


def source_options(args: argparse.Namespace, **overrides: bool) -> tuple[SourceOptions, SyncOptions]:
    try:
        sync = SyncOptions(
            hop=args.hop_ms / 1000,
            context=args.context_ms / 1000,
            max_wait=args.sync_wait_ms / 1000,
            sample_rate=args.sample_rate,
        )
        options = SourceOptions(
            realtime=args.realtime,
            loop=args.loop,
            rtsp_transport=args.rtsp_transport,
            low_latency={"auto": None, "on": True, "off": False}[args.low_latency],
            av_options=dict(args.av_option),
            luma_size=args.luma_size,
            sample_rate=args.sample_rate,
            segment_align=sync.hop,
            stall_timeout=args.stall_timeout,
            **overrides,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return options, sync


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
    return parser


def _print_state(change: StateChange) -> None:
    detail = f": {change.detail}" if change.detail else ""
    retry = f" (retry in {change.retry_in:.1f} s)" if change.retry_in is not None else ""
    log.info("stream '%s' %s%s%s", change.stream_id, change.state.value, detail, retry)


async def _probe(args: argparse.Namespace) -> None:
    from .probe import probe

    spec = parse_source(args.source)
    options, sync = source_options(args, fail_fast=True)
    await probe(spec, options, sync, timeline=args.timeline, seconds=args.seconds, on_state=_print_state)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    if args.command == "probe" and args.timeline:
        level = min(level, logging.INFO)  # show reconnects while watching a timeline
    logging.basicConfig(level=level, format="streamer: %(message)s", stream=sys.stderr)
    try:
        asyncio.run(_probe(args))
    except StreamerError as exc:
        log.error("error: %s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
