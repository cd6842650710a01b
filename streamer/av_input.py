"""Files and network streams through PyAV (FFmpeg): open, describe, demux, decode, hand off.

Live sources get low-latency demuxing by default (no demuxer buffering, a small probe) and no frame-threading
delay; files decode with frame threads. Everything is overridable through ``SourceOptions.av_options``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import av

from .audio import AudioConverter
from .errors import DecodeError, SourceError, SourceOpenError
from .luma import luma_from_av
from .media import AudioChunk, AudioInfo, AvFullFrame, StreamInfo, VideoFrame, VideoInfo
from .options import SourceOptions
from .spec import SourceKind, SourceSpec
from .worker import Pacer, WorkerContext

LIVE_DEMUX_OPTIONS = {"fflags": "nobuffer", "probesize": "65536", "analyzeduration": "500000"}
log = logging.getLogger(__name__)

_CODEC_FLAG_LOW_DELAY = 1 << 19  # AV_CODEC_FLAG_LOW_DELAY: no frame threading, output frames at once
_MAX_BAD_PACKETS = 100  # consecutive undecodable packets before the source counts as broken


def demux_options(spec: SourceSpec, options: SourceOptions) -> dict[str, str]:
    opts: dict[str, str] = {}
    low_latency = spec.is_live if options.low_latency is None else options.low_latency
    if spec.kind is SourceKind.NETWORK:
        if low_latency:
            opts.update(LIVE_DEMUX_OPTIONS)
        if spec.uri.lower().startswith(("rtsp://", "rtsps://")):
            opts["rtsp_transport"] = options.rtsp_transport
    opts.update(options.av_options)
    return opts


def explain(exc: BaseException, spec: SourceSpec) -> str:
    """A one-line cause for a PyAV/OS error, without the (secret-bearing) URI FFmpeg likes to append."""
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a media file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, av.error.InvalidDataError):
        return "not a media file, or a damaged one (FFmpeg: invalid data found when processing input)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, av.error.ExitError):
        return "timed out: no data"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).replace(spec.uri, spec.redacted).split())


def open_container(spec: SourceSpec, options: SourceOptions) -> Any:
    target = spec.params.get("path", spec.uri) if spec.kind is SourceKind.FILE else spec.uri
    try:
        return av.open(
            target,
            mode="r",
            options=demux_options(spec, options),
            timeout=(options.open_timeout, options.stall_timeout) if spec.is_live else None,
        )
    except (av.FFmpegError, OSError) as exc:
        raise SourceOpenError(spec.stream_id, f"cannot open {spec.redacted}: {explain(exc, spec)}") from exc


def decodable_tracks(container: Any, spec: SourceSpec) -> tuple[Any, Any]:
    """The first video and audio track this FFmpeg can decode; a track it cannot is skipped with a warning, and a
    source left with none raises :class:`DecodeError` (unsupported codec)."""
    picked: list[Any] = []
    skipped: list[str] = []
    for tracks, kind in ((container.streams.video, "video"), (container.streams.audio, "audio")):
        usable = [t for t in tracks if t.codec_context is not None]
        picked.append(usable[0] if usable else None)
        if tracks and not usable:
            skipped.append(kind)
    if skipped and picked == [None, None]:
        raise DecodeError(
            spec.stream_id, f"{spec.redacted}: unsupported codec: no decoder for its {' or '.join(skipped)}"
        )
    for kind in skipped:
        log.warning("stream '%s': its %s track uses a codec this FFmpeg cannot decode; going on without it",
                    spec.stream_id, kind)  # fmt: skip
    return picked[0], picked[1]


def describe(container: Any, spec: SourceSpec, video: Any, audio: Any) -> StreamInfo:
    """What the source carries: ``video``/``audio`` are the tracks :func:`decodable_tracks` picked."""
    vinfo = ainfo = None
    if video is not None:
        rate = video.average_rate or video.guessed_rate
        cc = video.codec_context
        vinfo = VideoInfo(codec=cc.name, width=cc.width, height=cc.height, fps=round(float(rate), 3) if rate else None)
    if audio is not None:
        cc = audio.codec_context
        ainfo = AudioInfo(codec=cc.name, sample_rate=cc.sample_rate, channels=cc.channels)
    duration = container.duration / 1e6 if container.duration else None
    return StreamInfo(
        stream_id=spec.stream_id,
        uri=spec.redacted,
        kind=spec.kind.value,
        live=spec.is_live,
        video=vinfo,
        audio=ainfo,
        duration=round(duration, 3) if duration else None,
    )


def run_av(ctx: WorkerContext) -> None:
    """Worker for files and network streams."""
    spec, options = ctx.spec, ctx.options
    container = open_container(spec, options)
    try:
        with container:
            _decode(ctx, container)
    except SourceError:
        raise
    except (av.FFmpegError, OSError) as exc:
        raise SourceError(spec.stream_id, f"{spec.redacted}: {explain(exc, spec)}") from exc


def _decode(ctx: WorkerContext, container: Any) -> None:
    spec, options, timeline = ctx.spec, ctx.options, ctx.timeline
    if not container.streams.video and not container.streams.audio:
        raise DecodeError(spec.stream_id, f"{spec.redacted}: no audio or video stream in it")
    video, audio = decodable_tracks(container, spec)
    low_latency = spec.is_live if options.low_latency is None else options.low_latency
    if video is not None:
        if low_latency:
            video.codec_context.flags |= _CODEC_FLAG_LOW_DELAY
        else:
            video.codec_context.thread_type = "AUTO"
    info = describe(container, spec, video, audio)
    start = container.start_time
    timeline.start_segment(ctx.anchor, start / 1e6 if start is not None else None)
    ctx.opened(info)

    converter = AudioConverter(options.sample_rate)
    pacer = Pacer(ctx.quit) if options.realtime and not spec.is_live else None
    default_duration = 1.0 / info.video.fps if info.video and info.video.fps else 0.0
    last_raw: float | None = None
    bad = 0
    streams = [s for s in (video, audio) if s is not None]
    video_index = video.index if video is not None else -1
    # float seconds per tick, once: Fraction arithmetic per frame costs more than it looks
    seconds_per_tick = {s.index: float(s.time_base) for s in streams}
    for packet in container.demux(streams):
        if ctx.quit.is_set():
            return
        if packet.stream_index not in seconds_per_tick:
            continue  # a track we do not decode (FFmpeg may still hand over its packets)
        try:
            frames = packet.decode()
        except av.error.EOFError:
            break
        except (av.error.InvalidDataError, av.error.DecoderNotFoundError) as exc:
            bad += 1
            if bad >= _MAX_BAD_PACKETS:
                raise DecodeError(spec.stream_id, f"{spec.redacted}: cannot decode: {explain(exc, spec)}") from exc
            continue
        bad = 0
        now = time.time()
        tick = seconds_per_tick[packet.stream_index]
        for frame in frames:
            if packet.stream_index == video_index:
                if frame.pts is None and last_raw is None:
                    continue  # a live stream's first frame can lack a timestamp: nothing to place it by
                raw = frame.pts * tick if frame.pts is not None else (last_raw or 0.0) + default_duration
                last_raw = raw
                t = timeline.to_stream_time("video", raw)
                if t < timeline.segment_start - 1e-6:
                    continue  # before the stream's start: trimmed
                duration = frame.duration * tick if frame.duration else default_duration
                luma = luma_from_av(frame, options.luma_size)
                if pacer is not None:
                    pacer.wait(t)
                full = AvFullFrame(frame) if options.keep_full_frames else None
                ctx.send(VideoFrame(t=t, luma=luma, full=full, duration=duration or None, wall_time=now))
                timeline.reached(t + duration)
            elif frame.pts is not None:
                t = timeline.to_stream_time("audio", frame.pts * tick)
                _send_audio(ctx, converter.convert(frame, t, now), pacer)
    _send_audio(ctx, converter.flush(time.time()), pacer)
    _check_complete(ctx, info)


def _send_audio(ctx: WorkerContext, chunk: AudioChunk | None, pacer: Pacer | None) -> None:
    if chunk is None:
        return
    sr = ctx.options.sample_rate
    start = ctx.timeline.segment_start
    if chunk.t < start - 1e-9:  # trim what lies before the stream's start
        skip = math.ceil((start - chunk.t) * sr - 1e-6)
        if skip >= len(chunk.samples):
            return
        chunk = AudioChunk(t=chunk.t + skip / sr, samples=chunk.samples[skip:], wall_time=chunk.wall_time)
    if pacer is not None:
        pacer.wait(chunk.t)
    ctx.send(chunk)
    ctx.timeline.reached(chunk.end(sr))


def _check_complete(ctx: WorkerContext, info: StreamInfo) -> None:
    """A file that ends well before the duration its header declares was cut short."""
    if info.live or not info.duration:
        return
    reached = ctx.timeline.end - ctx.timeline.segment_start
    if reached < info.duration - max(0.5, 0.05 * info.duration):
        raise DecodeError(
            ctx.spec.stream_id,
            f"{ctx.spec.redacted}: file is truncated: its media ends at {reached:.1f} s "
            f"of the {info.duration:.1f} s it declares",
        )
