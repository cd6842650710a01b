"""Files and network streams through PyAV (FFmpeg): open, describe, demux, decode, hand off.

Live sources get low-latency demuxing by default (no demuxer buffering, a small probe) and no frame-threading
delay; files decode with frame threads. Everything is overridable through ``SourceOptions.av_options``.

* Tracks: the first decodable video and the first decodable audio track are analyzed, whatever their order in
  the container (``SourceOptions.video_track`` / ``audio_track`` pick another one, or none).
* The source is announced (:meth:`WorkerContext.opened`, state ``online``) once its first frame is decoded, so
  its width and height are the decoded ones and a listener (UDP) that hears nothing is not ``online``.
* Clocks: media time comes from the timestamps, except for live sources that have none that advance with the
  wall clock (MJPEG over HTTP, raw streams: FFmpeg then invents 25 fps): those are stamped on arrival, like
  cameras, and their frame rate is measured. A live source whose timestamps drift from the wall clock by more
  than :data:`DRIFT_LIMIT` is switched to arrival stamps with a warning.
* Recorded media over HTTP (an mp4, an HLS VOD playlist: the demuxer knows a duration) is analyzed like a file:
  not ``live``, so the hand-off waits for the analyzer instead of dropping.
* A protocol, demuxer or decoder this FFmpeg lacks is :class:`SourceUnsupportedError`: permanent, not retried.
* Video decodes on a hardware device when ``SourceOptions.hwaccel`` asks for one that opens (:mod:`.hwaccel`),
  else on the CPU.
* Video decodes without the deblocking filter (``SourceOptions.fast_decode``: 15-20% of H.264 decoding,
  invisible in the small analysis image, but it would show in a snapshot) and keeps no decoded picture: a
  snapshot is its frame decoded again at full quality. MP4/MOV and Matroska/WebM files decode it again from the
  file (:class:`FileFrame`); their decoding then never waits for pictures held for snapshots, and can run ahead
  of the analyzer. Live streams and other files decode it again from their own packets since the key frame
  before it (:class:`streamer.packets.PacketFrame`), software decoding only.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import av
import numpy as np
import numpy.typing as npt

from .audio import AudioConverter
from .errors import (
    DecodeError,
    SourceCertificateError,
    SourceError,
    SourceOpenError,
    SourceUnsupportedError,
    UnsupportedCodecError,
)
from .ffmpeg_log import errors_said
from .hwaccel import decoder_device, in_use
from .luma import luma_from_av
from .media import AudioChunk, AudioInfo, AvFullFrame, StreamInfo, VideoFrame, VideoInfo
from .options import SourceOptions
from .packets import GopKeeper, PacketFrame
from .spec import SourceKind, SourceSpec
from .tls import tls_options, uses_tls
from .worker import Pacer, WorkerContext

LIVE_DEMUX_OPTIONS = {"fflags": "nobuffer", "probesize": "65536", "analyzeduration": "500000"}
log = logging.getLogger(__name__)

_CODEC_FLAG_LOW_DELAY = 1 << 19  # AV_CODEC_FLAG_LOW_DELAY: no frame threading, output frames at once
_SEEK_MARGIN = 1.0  # seconds before a frame to seek to when decoding it again (B-frames shown before their key)
_MAX_BAD_PACKETS = 100  # consecutive undecodable packets before the source counts as broken
_AVFMT_NOTIMESTAMPS = 0x0080  # the demuxer has no timestamps (mpjpeg): FFmpeg numbers frames at a guessed rate
_SEGMENTED_FORMATS = frozenset({"hls", "dash"})  # live media arriving a segment at a time: no drift check
# A file's audio waits for its video to be decoded as far, unless the demuxer has read this many seconds of it
# with no video packet (a hole in the video track, or its end)
AUDIO_HOLD = 2.0
ARRIVAL_MEASURE = (10, 2.0)  # an arrival-stamped source is announced after this many frames or seconds
ARRIVAL_AUDIO_TOLERANCE = 0.3  # seconds arrival may jitter before audio stamped on arrival is re-anchored
DRIFT_LIMIT = 0.3  # a live source whose media time runs this much slower or faster than the wall clock ...
DRIFT_WINDOW = (2.0, 6.0)  # ... between these wall seconds after its first frame is re-stamped on arrival


def demux_options(spec: SourceSpec, options: SourceOptions) -> dict[str, str]:
    opts: dict[str, str] = {}
    low_latency = spec.is_live if options.low_latency is None else options.low_latency
    if spec.kind is SourceKind.NETWORK:
        if low_latency:
            opts.update(LIVE_DEMUX_OPTIONS)
        if spec.scheme in ("rtsp", "rtsps"):
            opts["rtsp_transport"] = options.rtsp_transport
            # FFmpeg's own socket timeout (microseconds): what ends a silent RTSP connection (read_timeout())
            opts["timeout"] = str(round(max(options.open_timeout, options.stall_timeout) * 1_000_000))
        opts.update(tls_options(spec, options))
    opts.update(options.av_options)
    return opts


def read_timeout(spec: SourceSpec, options: SourceOptions) -> float | None:
    """PyAV's read timeout for a live source (seconds), or None where FFmpeg's own socket timeout stands in.

    PyAV checks its timeout in FFmpeg's interrupt callback, taking the interpreter lock on every call, and FFmpeg
    calls it on every small socket read and poll: several times an RTP packet. Alone in a process that costs
    nothing measurable; with several live streams sharing an ingest process, their capture threads queue for
    the lock on it, about 15% of the process's CPU (benchmarks/README.md, "Live capacity"). So ``rtsp`` goes
    without: FFmpeg's ``timeout`` (:func:`demux_options`) ends a connection that falls silent, without the lock,
    and :class:`~streamer.source.Source` reports a stall a second after ``stall_timeout`` without media either
    way (also where a server still sends RTCP) and reconnects. Other live sources keep PyAV's timeout (``rtsps``
    too: FFmpeg's timeout over TLS is not tested here)."""
    if spec.kind is SourceKind.NETWORK and spec.scheme == "rtsp":
        return None
    return options.stall_timeout


def explain(exc: BaseException, spec: SourceSpec) -> str:
    """A one-line cause for a PyAV/OS error, without the (secret-bearing) URI FFmpeg likes to append."""
    if isinstance(exc, av.error.ProtocolNotFoundError):
        return f"this build of FFmpeg (PyAV's) has no '{spec.scheme}' protocol"
    if isinstance(exc, av.error.DemuxerNotFoundError):
        return "this build of FFmpeg (PyAV's) has no demuxer for it"
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


def _demuxed(container: Any, streams: list[Any]) -> Iterator[Any]:
    """``container.demux(streams)``, ending cleanly where PyAV cannot: a stream that appeared mid-file (MPEG-TS
    may add one at any time) has no PyAV stream, and the end-of-file flush raises IndexError on it after every
    packet of ``streams`` (their flush included: they come first) was given."""
    try:
        yield from container.demux(streams)
    except IndexError:
        return


def open_container(spec: SourceSpec, options: SourceOptions) -> Any:
    target = spec.params.get("path", spec.uri) if spec.kind is SourceKind.FILE else spec.uri
    try:
        with _certificate_failures_said() if uses_tls(spec) else contextlib.nullcontext():
            return av.open(
                target,
                mode="r",
                options=demux_options(spec, options),
                timeout=(options.open_timeout, read_timeout(spec, options)) if spec.is_live else None,
                hwaccel=decoder_device(spec.stream_id, options.hwaccel),
                metadata_errors="replace",  # a damaged file's tags may not be UTF-8: they are not worth failing on
            )
    except CertificateError as exc:
        raise SourceCertificateError(spec.stream_id, f"cannot open {spec.redacted}: {exc}") from exc
    except (av.error.ProtocolNotFoundError, av.error.DemuxerNotFoundError) as exc:
        raise SourceUnsupportedError(spec.stream_id, f"cannot open {spec.redacted}: {explain(exc, spec)}") from exc
    except (av.FFmpegError, OSError) as exc:
        raise SourceOpenError(spec.stream_id, f"cannot open {spec.redacted}: {explain(exc, spec)}") from exc


class CertificateError(Exception):
    """The server's TLS certificate failed verification."""


@contextlib.contextmanager
def _certificate_failures_said() -> Iterator[None]:
    """Around opening a TLS source: read FFmpeg's log of this thread, so that a failed certificate verification
    (to FFmpeg, an I/O error) is said as such."""
    with errors_said() as logs:
        try:
            yield
        except OSError as exc:
            said = " ".join(str(message).strip() for _, name, message in logs if name == "tls")
            if "certificate" in said.lower() or "verif" in said.lower():
                raise CertificateError(
                    f"TLS: the server's certificate failed verification ({said}); trust its CA with ca_file "
                    "(--ca-file) or turn verification off with tls_insecure (--tls-insecure)"
                ) from exc
            raise


def decodable_tracks(container: Any, spec: SourceSpec, options: SourceOptions | None = None) -> tuple[Any, Any]:
    """The video and audio track to analyze: by default the first of each kind this FFmpeg can decode (a track it
    cannot is skipped with a warning); ``options.video_track``/``audio_track`` pick the Nth of its kind instead,
    or none (-1). A source left with no track raises :class:`DecodeError`; a track asked for that is missing or
    undecodable raises :class:`SourceUnsupportedError`."""
    options = options or SourceOptions()
    picked: list[Any] = []
    skipped: list[str] = []
    for tracks, kind, wanted in (
        (container.streams.video, "video", options.video_track),
        (container.streams.audio, "audio", options.audio_track),
    ):
        if wanted is not None and wanted < 0:
            picked.append(None)
            continue
        if wanted is not None:
            if wanted >= len(tracks):
                raise SourceUnsupportedError(
                    spec.stream_id, f"{spec.redacted}: has no {kind} track {wanted} (it has {len(tracks)})"
                )
            if tracks[wanted].codec_context is None:
                raise UnsupportedCodecError(
                    spec.stream_id, f"{spec.redacted}: {kind} track {wanted} uses a codec this FFmpeg cannot decode"
                )
            picked.append(tracks[wanted])
            continue
        usable = [t for t in tracks if t.codec_context is not None]
        picked.append(usable[0] if usable else None)
        if tracks and not usable:
            skipped.append(kind)
    if skipped and picked == [None, None]:
        raise UnsupportedCodecError(
            spec.stream_id, f"{spec.redacted}: unsupported codec: no decoder for its {' or '.join(skipped)}"
        )
    if picked == [None, None]:
        raise DecodeError(spec.stream_id, f"{spec.redacted}: no audio or video track to analyze in it")
    for kind in skipped:
        log.warning("stream '%s': its %s track uses a codec this FFmpeg cannot decode; going on without it",
                    spec.stream_id, kind)  # fmt: skip
    return picked[0], picked[1]


def describe(container: Any, spec: SourceSpec, video: Any, audio: Any, hwaccel: str | None = None) -> StreamInfo:
    """What the source carries: ``video``/``audio`` are the tracks :func:`decodable_tracks` picked; ``hwaccel``
    the setting the container was opened with (:func:`open_container`)."""
    vinfo = ainfo = None
    if video is not None:
        rate = video.average_rate or video.guessed_rate
        cc = video.codec_context
        vinfo = VideoInfo(
            codec=cc.name, width=cc.width, height=cc.height, fps=round(float(rate), 3) if rate else None,
            hwaccel=in_use(cc, hwaccel),
        )  # fmt: skip
    if audio is not None:
        cc = audio.codec_context
        ainfo = AudioInfo(codec=cc.name, sample_rate=cc.sample_rate, channels=cc.channels)
    duration = container.duration / 1e6 if container.duration else None
    return StreamInfo(
        stream_id=spec.stream_id,
        uri=spec.redacted,
        kind=spec.kind.value,
        live=spec.is_live and not is_recorded(container, spec),
        video=vinfo,
        audio=ainfo,
        duration=round(duration, 3) if duration else None,
    )


def is_recorded(container: Any, spec: SourceSpec) -> bool:
    """Recorded media fetched over HTTP(S): an mp4 or an HLS VOD playlist, whose demuxer knows its duration."""
    return spec.kind is SourceKind.NETWORK and spec.scheme in ("http", "https") and bool(container.duration)


def stamped_on_arrival(container: Any, spec: SourceSpec) -> bool:
    """A live source without timestamps of its own (FFmpeg's demuxer says so): media time is arrival time."""
    return spec.is_live and bool(container.format.flags & _AVFMT_NOTIMESTAMPS)


# Containers whose index seeks a track to the key frame at or before a timestamp exactly (MP4/MOV, Matroska/WebM).
# Others do not: an MPEG-TS seek lands a GOP late or off a key frame, AVI's B-frames come back with other
# timestamps. Their frames keep the decoded picture instead, and are decoded with the deblocking filter.
_EXACT_SEEK_FORMATS = frozenset({"mov", "mp4", "matroska", "webm"})


def seeks_exactly(container: Any) -> bool:
    return bool(_EXACT_SEEK_FORMATS & set(container.format.name.split(",")))


def file_identity(spec: SourceSpec) -> tuple[int, int] | None:
    """(device, inode) of a file source that is a regular file (not a FIFO or a device), else None."""
    try:
        status = os.stat(spec.params.get("path", spec.uri))
    except OSError:
        return None
    return (status.st_dev, status.st_ino) if stat.S_ISREG(status.st_mode) else None


@dataclass(frozen=True, slots=True)
class FileFrame:
    """A file's frame by its track and timestamp, decoded again (at full quality) when its picture is asked for.

    A snapshot is taken once per event; keeping every timestep's picture instead would hold 1.4 MB each at 720p
    and hold the file's decoding back to what the analyzer has scored. Only for containers that
    :func:`seeks_exactly`; should a seek still land after the frame, it is decoded from the start."""

    resident: ClassVar[bool] = False
    spec: SourceSpec
    options: SourceOptions
    track: int  # the container's stream index
    pts: int  # in the track's time base
    identity: tuple[int, int]  # the file's (device, inode) when it was analyzed: a file replaced since is not it

    def to_bgr(self) -> npt.NDArray[np.uint8]:
        if file_identity(self.spec) != self.identity:
            raise DecodeError(self.spec.stream_id, f"{self.spec.redacted}: replaced or gone since it was analyzed")
        for seek in (True, False):  # from a second before it; should that land after it, from the start
            with open_container(self.spec, replace(self.options, low_latency=False)) as container:
                stream = container.streams[self.track]
                stream.codec_context.thread_type = "AUTO"
                if seek:
                    margin = round(_SEEK_MARGIN / float(stream.time_base))
                    container.seek(max(self.pts - margin, stream.start_time or 0), stream=stream, backward=True)
                frame = self._find(container, stream)
                if frame is not None:
                    image: npt.NDArray[np.uint8] = frame.to_ndarray(format="bgr24")
                    return image
        raise DecodeError(self.spec.stream_id, f"{self.spec.redacted}: the frame to snapshot is gone")

    def _find(self, container: Any, stream: Any) -> Any:
        """The frame with this timestamp (else the nearest), decoding from where the container was sought; None
        when the first frame decoded is already past it."""
        before = None  # the last frame shown before it
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            if frame.pts < self.pts:
                before = frame
            elif frame.pts == self.pts:
                return frame
            elif before is None:
                return None
            else:  # no frame has its timestamp: the nearer of the two around it
                return before if self.pts - before.pts < frame.pts - self.pts else frame
        return before


def frame_threads() -> int:
    """Decoder threads when latency does not matter (files, recorded media, ``low_latency`` off): more frames in
    flight than FFmpeg's own choice (one per core, plus one).

    Between two packets the decoding thread does per-frame work of its own (the luma image, audio, the hand-off)
    and waits for the interpreter lock; with only cores + 1 frames in flight the decoder's threads then wait too.
    On 2 cores, a 240 s 720p30 file in ``streamer run``: 3 threads 24.1-24.4 s, 8 threads 19.8-21.3 s, 12 no
    better (benchmarks/README.md, "Analyzer throughput on files")."""
    return min(16, max(8, (os.cpu_count() or 1) + 1))


def run_av(ctx: WorkerContext) -> None:
    """Worker for files and network streams."""
    spec, options = ctx.spec, ctx.options
    container = open_container(spec, options)
    if options.low_latency is None and is_recorded(container, spec):
        # live demuxing (no buffering) would drop what FFmpeg read while probing: open it again as a file
        container.close()
        container = open_container(spec, replace(options, low_latency=False))
    try:
        with container:
            _Decoder(ctx, container).run()
    except SourceError:
        raise
    except (av.FFmpegError, OSError) as exc:
        raise SourceError(spec.stream_id, f"{spec.redacted}: {explain(exc, spec)}") from exc
    finally:
        if ctx.ring is not None:
            ctx.ring.close_session()  # its recordings end with the connection's last packet


class _Announcer:
    """Holds a connection's first items until its first frame is decoded (and, for a source stamped on arrival,
    until its frame rate is measured), then announces the source with what was learned, and sends them."""

    def __init__(self, ctx: WorkerContext, info: StreamInfo, *, measure_fps: bool) -> None:
        self.ctx = ctx
        self.info = info
        self.measure_fps = measure_fps
        self.done = False
        self._held: list[VideoFrame | AudioChunk] = []
        self._frame_times: list[float] = []  # monotonic arrival of each video frame while measuring
        self._size: tuple[int, int] | None = None

    def send(self, item: VideoFrame | AudioChunk, size: tuple[int, int] | None = None) -> None:
        if self.done:
            self.ctx.send(item)
            return
        self._held.append(item)
        if size is not None and self._size is None:
            self._size = size
        if isinstance(item, VideoFrame):
            self._frame_times.append(time.monotonic())
        video_seen = self.info.video is None or self._frame_times
        if not video_seen:
            return
        if self.measure_fps:
            n, seconds = ARRIVAL_MEASURE
            if len(self._frame_times) < n and self._frame_times[-1] - self._frame_times[0] < seconds:
                return
        self.announce()

    def announce(self) -> None:
        if self.done:
            return
        self.done = True
        info = self.info
        if info.video is not None:
            video = info.video
            if self._size is not None and (video.width, video.height) != self._size:
                video = replace(video, width=self._size[0], height=self._size[1])
            if self.measure_fps and len(self._frame_times) >= 2:
                span = self._frame_times[-1] - self._frame_times[0]
                video = replace(video, fps=round((len(self._frame_times) - 1) / span, 2) if span > 0 else None)
            info = replace(info, video=video)
        self.info = info
        self.ctx.opened(info)
        held, self._held = self._held, []
        for item in held:
            self.ctx.send(item)


class _DriftCheck:
    """Compares a live source's media time with the wall clock once, over :data:`DRIFT_WINDOW`."""

    def __init__(self) -> None:
        self._first: float | None = None
        self._ref: tuple[float, float, int] | None = None  # (monotonic, media time, jumps) at the window's start
        self.done = False

    def drifted(self, t: float, jumps: int) -> float | None:
        """The media/wall ratio when it is off by more than :data:`DRIFT_LIMIT` (once), else ``None``. A timestamp
        jump in the window (``jumps``: the timeline's count; e.g. RTCP re-synchronization) starts it again."""
        now = time.monotonic()
        if self._first is None:
            self._first = now
        begin, end = DRIFT_WINDOW
        if self._ref is not None and self._ref[2] != jumps:
            self._ref, self._first = None, now - begin
        if self._ref is None:
            if now - self._first >= begin:
                self._ref = (now, t, jumps)
            return None
        if now - self._first < end:
            return None
        self.done = True
        ratio = (t - self._ref[1]) / max(1e-6, now - self._ref[0])
        return ratio if abs(ratio - 1.0) > DRIFT_LIMIT else None


class _Decoder:
    """One connection's demux/decode loop: frames to media time, the luma image and audio chunks, handed off."""

    def __init__(self, ctx: WorkerContext, container: Any) -> None:
        spec, options = ctx.spec, ctx.options
        self.ctx = ctx
        self.container = container
        if not container.streams.video and not container.streams.audio:
            raise DecodeError(spec.stream_id, f"{spec.redacted}: no audio or video stream in it")
        self.video, self.audio = decodable_tracks(container, spec, options)
        self.info = describe(container, spec, self.video, self.audio, options.hwaccel)
        live = self.info.live
        low_latency = live if options.low_latency is None else options.low_latency
        # a snapshot of a regular MP4/MOV or Matroska file is its frame decoded again (FileFrame): the file's
        # identity then; other files' frames, and frames without a timestamp, keep their picture
        identity = file_identity(spec) if spec.kind is SourceKind.FILE else None
        redecodable = identity is not None and seeks_exactly(container)
        self.redecode = identity if redecodable and options.keep_full_frames else None
        # other sources' snapshots (live streams, files that do not seek exactly) are decoded again from their
        # own packets since the key frame (software decoding only: a hardware decoder has no such option)
        software = self.info.video is not None and self.info.video.hwaccel is None
        keep_packets = (
            software and options.keep_full_frames and self.redecode is None and options.fast_decode is not False
        )
        self.gops = GopKeeper(spec.stream_id, self.video) if keep_packets else None
        if self.video is not None:
            if low_latency:
                self.video.codec_context.flags |= _CODEC_FLAG_LOW_DELAY
            else:
                self.video.codec_context.thread_type = "AUTO"
                self.video.codec_context.thread_count = frame_threads()
            # auto: wherever a snapshot is decoded again in full
            fast = (redecodable or self.gops is not None) if options.fast_decode is None else options.fast_decode
            if fast:
                self.video.codec_context.options = {"skip_loop_filter": "all"}
        self.arrival = stamped_on_arrival(container, spec)
        check = live and not self.arrival and container.format.name not in _SEGMENTED_FORMATS
        self.drift = _DriftCheck() if check and self.video is not None else None
        self.announcer = _Announcer(ctx, self.info, measure_fps=self.arrival)
        self.converter = AudioConverter(options.sample_rate, hop=options.segment_align)
        if self.arrival:
            self.converter.tolerance = ARRIVAL_AUDIO_TOLERANCE
        self.pacer = Pacer(ctx.quit) if options.realtime and not spec.is_live else None
        fps = self.info.video.fps if self.info.video else None
        self.default_duration = 1.0 / fps if fps and not self.arrival else 0.0
        self.last_raw: float | None = None
        self.arrival_origin: float | None = None  # monotonic time of the first frame, when stamped on arrival
        self.video_tick = float(self.video.time_base) if self.video is not None else 0.0
        # a file's audio waits for its video to be decoded as far (frame threads hold frames back)
        hold = not live and self.video is not None and self.audio is not None
        self.held_audio: collections.deque[tuple[AudioChunk, float]] | None = collections.deque() if hold else None
        self.video_end = -math.inf  # where the decoded video has reached, media time
        self.video_demuxed = -math.inf  # the latest raw time of a video packet read from the file
        # a file's earliest and latest raw packet time (for _check_complete), and the last packet's: a stamp further
        # from it than the file is long is a wild one (a damaged header) and does not widen the span
        self.raw_first, self.raw_last, self.latest_raw = math.inf, -math.inf, math.nan
        self.audio_tick = float(self.audio.time_base) if self.audio is not None else 0.0
        self.ring = ctx.ring
        if self.ring is not None:
            self.ring.open_session(self.video, self.audio)

    def run(self) -> None:
        ctx, spec = self.ctx, self.ctx.spec
        start = self.container.start_time
        ctx.timeline.start_segment(ctx.anchor, None if self.arrival or start is None else start / 1e6)
        if self.info.video is None and self.info.audio is None:
            self.announcer.announce()
        bad = 0
        span_limit = self.info.duration or math.inf
        streams = [s for s in (self.video, self.audio) if s is not None]
        for packet in _demuxed(self.container, streams):
            if ctx.quit.is_set():
                return
            if packet.stream is not self.video and packet.stream is not self.audio:
                continue  # a track we do not decode (FFmpeg may still hand over its packets)
            if not self.info.live and packet.pts is not None:
                raw = packet.pts * (self.video_tick if packet.stream is self.video else self.audio_tick)
                if not abs(raw - self.latest_raw) > span_limit:  # the first, or not a wild stamp
                    self.raw_first, self.raw_last = min(self.raw_first, raw), max(self.raw_last, raw)
                self.latest_raw = raw
            if packet.stream is self.video and self.gops is not None:
                self.gops.add(packet)
            if self.ring is not None:
                self.ring.add(packet, packet.stream is self.video)
            if packet.stream is self.video and self.held_audio is not None:
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is not None:
                    self.video_demuxed = max(self.video_demuxed, stamp * self.video_tick)
            try:
                frames = packet.decode()
            except av.error.EOFError:
                break
            except av.FFmpegError as exc:
                # damaged data: InvalidDataError mostly, but many decoders still return a bare -1, which PyAV
                # raises as EPERM (PermissionError): a bad packet either way, not a permission
                bad += 1
                if bad >= _MAX_BAD_PACKETS:
                    raise DecodeError(spec.stream_id, f"{spec.redacted}: cannot decode: {explain(exc, spec)}") from exc
                continue
            bad = 0
            now = time.time()
            for frame in frames:
                # by the frame's kind, not the packet's index: PyAV's end-of-stream flush packets all say 0
                if isinstance(frame, av.VideoFrame):
                    self._video(frame, now)
                elif frame.pts is not None:
                    self._audio(frame, now)
        self._send_audio(self.converter.flush(time.time()))
        if self.held_audio is not None:
            self._release_audio(everything=True)
        self.announcer.announce()
        _check_complete(ctx, self.announcer.info, self.raw_last - self.raw_first)

    def _video(self, frame: Any, now: float) -> None:
        ctx, options = self.ctx, self.ctx.options
        timeline = ctx.timeline
        if self.arrival:
            raw = time.monotonic()
        elif frame.pts is None and self.last_raw is None:
            return  # a live stream's first frame can lack a timestamp: nothing to place it by
        else:
            raw = (
                frame.pts * self.video_tick if frame.pts is not None else (self.last_raw or 0.0) + self.default_duration
            )
        self.last_raw = raw
        t = timeline.to_stream_time("video", raw)
        if self.ring is not None and not self.arrival:
            self.ring.learn(True, t, raw)
        if t < timeline.segment_start - 1e-6:
            return  # before the stream's start: trimmed
        if self.drift is not None:
            ratio = self.drift.drifted(t, timeline.jumps)
            if self.drift.done:
                self.drift = None
            if ratio is not None:
                self._switch_to_arrival(ratio)
                t = timeline.to_stream_time("video", time.monotonic())
        duration = frame.duration * self.video_tick if frame.duration and not self.arrival else self.default_duration
        luma = luma_from_av(frame, options.luma_size)
        if self.pacer is not None:
            self.pacer.wait(t)
        full: FileFrame | PacketFrame | AvFullFrame | None = None
        # (after a timestamp jump the same pts may come twice in the file: keep the picture)
        if self.redecode is not None and frame.pts is not None and not timeline.jumps:
            full = FileFrame(ctx.spec, options, self.video.index, frame.pts, self.redecode)
        elif self.gops is not None and (packets := self.gops.frame(frame.pts)) is not None:
            full = packets
        elif options.keep_full_frames:
            full = AvFullFrame(frame)
        item = VideoFrame(t=t, luma=luma, full=full, duration=duration or None, wall_time=now)
        self.announcer.send(item, (frame.width, frame.height))
        timeline.reached(t + duration)
        self.video_end = t + duration
        if self.held_audio:
            self._release_audio()

    def _audio(self, frame: Any, now: float) -> None:
        timeline = self.ctx.timeline
        raw = frame.pts * self.audio_tick
        if self.arrival:
            # no timestamps to trust: chunks follow each other by their sample count, re-anchored on arrival
            # when they fall behind or ahead of it (AudioConverter's tolerance)
            t = timeline.to_stream_time("audio", time.monotonic())
        else:
            t = timeline.to_stream_time("audio", raw)
            if self.ring is not None:
                self.ring.learn(False, t, raw)
        for chunk in self.converter.push(frame, t, now):
            self._send_audio(chunk, raw)

    def _switch_to_arrival(self, ratio: float) -> None:
        ctx = self.ctx
        log.warning(
            "stream '%s': its timestamps run at %.2fx the wall clock; stamping its frames on arrival instead",
            ctx.spec.stream_id, ratio,
        )  # fmt: skip
        self.arrival = True
        self.default_duration = 0.0
        self.converter.tolerance = ARRIVAL_AUDIO_TOLERANCE
        ctx.timeline.start_segment(ctx.timeline.end)

    def _send_audio(self, chunk: AudioChunk | None, raw: float = math.inf) -> None:
        """``raw``: the chunk's time in the file (to compare with its video packets'), when it has one."""
        ctx, pacer = self.ctx, self.pacer
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
        if self.held_audio is None:
            self._hand_audio(chunk)
            return
        self.held_audio.append((chunk, raw))
        self._release_audio()

    def _release_audio(self, *, everything: bool = False) -> None:
        """A file's audio goes on once the video has been decoded as far, or when no video packet was read
        within AUDIO_HOLD seconds before it (a hole in the video track, or its end). The decoder's frame threads
        and B-frames hold its frames back by a number of frames against the audio decoded from the same stretch
        of the file (seconds at a low frame rate), which the sync would otherwise take for a video track gone
        missing (its max_wait, 0.5 s)."""
        held = self.held_audio
        assert held is not None
        while held:
            chunk, raw = held[0]
            if not (everything or chunk.t < self.video_end or raw - self.video_demuxed > AUDIO_HOLD):
                return
            held.popleft()
            self._hand_audio(chunk)

    def _hand_audio(self, chunk: AudioChunk) -> None:
        self.announcer.send(chunk)
        self.ctx.timeline.reached(chunk.end(self.ctx.options.sample_rate))


def _check_complete(ctx: WorkerContext, info: StreamInfo, raw_span: float) -> None:
    """A file that ends well before the duration its header declares was cut short. Its packets' own times
    count too (``raw_span``): a file whose timestamps jump ahead declares the span they cover, and holds media up
    to its end although the timeline closed the gap."""
    if info.live or not info.duration:
        return
    reached = max(ctx.timeline.end - ctx.timeline.segment_start, raw_span)
    if reached < info.duration - max(0.5, 0.05 * info.duration):
        raise DecodeError(
            ctx.spec.stream_id,
            f"{ctx.spec.redacted}: file is truncated: its media ends at {reached:.1f} s "
            f"of the {info.duration:.1f} s it declares",
        )
