"""Synthetic test clips, encoded with PyAV, whose flashes and beeps sit at known media times.

Video is a static grey frame (luma ``base_luma``) that turns white (luma 235, video-range white) during each
flash ``[f, f + flash_len)``. Audio is deterministic low noise plus a sine during each beep
``[b, b + beep_len)``. Every frame's pts is set explicitly from its media time, so a test can check that an
analyzer puts each event at the right time.

Supported containers (by suffix) and codecs:

* ``.mp4``, ``.mkv``, ``.ts``: any video codec FFmpeg can mux there (default libx264) with ``"aac"`` or
  ``"libopus"`` audio;
* ``.webm``: video codec ``"libvpx"``/``"libvpx-vp9"`` and audio ``"libopus"`` only; anything else raises
  ``ValueError``, as does an unknown suffix or Opus at a rate other than 48 kHz.

Read back with PyAV, .mp4 and .mkv give pts equal to media time (mkv rounds to 1 ms). .ts cannot: its muxer
shifts every timestamp by the same constant so that dts stays >= 0 (the B-frame delay, 2/fps with B-frames),
and the audio encoder's priming frame (AAC 1024 samples, Opus 312) shows as audio starting that much before
the first video frame. Content stays in sync; times relative to the video stream's start_time are exact.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.packet import Packet
from av.video.stream import VideoStream

_CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".ts": "mpegts", ".webm": "webm"}
_WEBM_VIDEO = {"libvpx", "libvpx-vp9"}
_VIDEO_TB = Fraction(1, 90000)
_WHITE = 235
_SEED = 1234


def make_clip(
    path: Path,
    *,
    duration: float = 6.0,
    fps: float | None = 30.0,
    width: int = 320,
    height: int = 240,
    video_codec: str = "libx264",
    audio_codec: str | None = "aac",
    sample_rate: int = 48000,
    flashes: Sequence[float] = (),
    beeps: Sequence[float] = (),
    flash_len: float = 0.1,
    beep_len: float = 0.1,
    audio_offset: float = 0.0,
    vfr: bool = False,
    bframes: bool = True,
    with_video: bool = True,
    base_luma: int = 40,
    noise_dbfs: float = -60.0,
    beep_dbfs: float = -6.0,
    beep_hz: float = 1000.0,
    keyint: int | None = None,
) -> Path:
    """Encode a clip into ``path`` (container from its suffix) and return ``path``.

    Video (``with_video``): frame ``i`` at ``i / fps`` with a 1/90000 time base. ``vfr=True`` (implied by
    ``fps=None``) uses seeded random intervals between 1/60 s and 1/15 s and adds a frame exactly at each
    flash's start and end, so flashes still land on exact times. ``bframes`` turns x264's B-frames on (2) or off.
    ``keyint`` is the most frames between key frames (the GOP size); None means one second's worth (30 for VFR).

    Audio (``audio_codec``, None for none): stereo at ``sample_rate``, ``duration`` seconds of content: Gaussian
    noise with RMS ``noise_dbfs`` plus, during each beep, a ``beep_hz`` sine of peak ``beep_dbfs``, both
    channels alike. The whole track is delayed by ``audio_offset`` (>= 0): its first sample has that pts, a
    beep at ``b`` is heard at ``b + audio_offset``, and the track ends at ``duration + audio_offset``.
    """
    container_format = _CONTAINERS.get(path.suffix)
    if container_format is None:
        raise ValueError(f"unsupported clip suffix {path.suffix!r}; use one of {sorted(_CONTAINERS)}")
    if not with_video and audio_codec is None:
        raise ValueError("a clip needs video, audio or both")
    if audio_offset < 0:
        raise ValueError("audio_offset must be >= 0")
    if audio_codec == "libopus" and sample_rate != 48000:
        raise ValueError("libopus clips must use sample_rate=48000")
    if container_format == "webm" and (
        (with_video and video_codec not in _WEBM_VIDEO) or audio_codec not in (None, "libopus")
    ):
        raise ValueError("webm takes only libvpx/libvpx-vp9 video and libopus audio")

    with av.open(str(path), mode="w", format=container_format) as container:
        sources: list[Iterator[tuple[float, list[Packet[Any]]]]] = []
        if with_video:
            video = _add_video(container, video_codec, fps, vfr, bframes, width, height, keyint)
            times = _frame_times(duration, fps, vfr, flashes, flash_len)
            sources.append(_video_packets(video, times, base_luma, flashes, flash_len))
        if audio_codec is not None:
            audio = _add_audio(container, audio_codec, sample_rate)
            signal = _audio_signal(duration, sample_rate, beeps, beep_len, noise_dbfs, beep_dbfs, beep_hz)
            sources.append(_audio_packets(audio, signal, audio_offset))
        # Encoded in media-time order, so the muxer gets interleaved packets whatever the clip's length.
        for _, packets in heapq.merge(*sources, key=lambda item: item[0]):
            container.mux(packets)
    return path


def make_random_bytes(path: Path, size: int = 200_000, seed: int = 0) -> Path:
    """Write ``size`` seeded random bytes (a file no demuxer should accept) and return ``path``."""
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def truncate(src: Path, dst: Path, fraction: float) -> Path:
    """Copy the first ``fraction`` (0..1) of ``src``'s bytes into ``dst`` and return ``dst``."""
    if src == dst:
        raise ValueError("truncate needs distinct src and dst")
    size = int(src.stat().st_size * min(max(fraction, 0.0), 1.0))
    with src.open("rb") as fin:
        dst.write_bytes(fin.read(size))
    return dst


def _frame_times(
    duration: float, fps: float | None, vfr: bool, flashes: Sequence[float], flash_len: float
) -> list[float]:
    if fps is not None and not vfr:
        return [i / fps for i in range(int(np.ceil(duration * fps - 1e-9)))]
    rng = np.random.default_rng(_SEED)
    times, t = [], 0.0
    while t < duration:
        times.append(t)
        t += float(rng.uniform(1 / 60, 1 / 15))
    edges = [e for f in flashes for e in (f, f + flash_len) if 0 <= e < duration]
    times = [t for t in times if all(abs(t - e) > 0.005 for e in edges)]
    # Rounded to the 1/90000 tick first, so two times cannot collapse into one pts.
    return sorted({round(t * 90000) / 90000 for t in [*times, *edges]})


def _yuv_image(width: int, height: int, luma: int) -> npt.NDArray[np.uint8]:
    """A flat grey yuv420p picture as PyAV's from_ndarray wants it: (height * 3 / 2, width)."""
    image = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
    image[:height] = luma
    return image


def _audio_signal(
    duration: float,
    sample_rate: int,
    beeps: Sequence[float],
    beep_len: float,
    noise_dbfs: float,
    beep_dbfs: float,
    beep_hz: float,
) -> npt.NDArray[np.float32]:
    """(2, n) float32: the same noise-plus-beeps content on both channels."""
    n = round(duration * sample_rate)
    mono = np.random.default_rng(_SEED).normal(0.0, 10 ** (noise_dbfs / 20), n)
    t = np.arange(n) / sample_rate
    for b in beeps:
        on = (t >= b) & (t < b + beep_len)
        mono[on] += 10 ** (beep_dbfs / 20) * np.sin(2 * np.pi * beep_hz * (t[on] - b))
    mono = np.clip(mono, -1.0, 1.0).astype(np.float32)
    return np.stack([mono, mono])


def _add_video(
    container: OutputContainer,
    codec: str,
    fps: float | None,
    vfr: bool,
    bframes: bool,
    width: int,
    height: int,
    keyint: int | None = None,
) -> VideoStream:
    rate = Fraction(fps).limit_denominator(1001) if fps is not None and not vfr else None
    options = {"bf": "2" if bframes else "0", "preset": "veryfast"} if codec == "libx264" else {}
    stream = container.add_stream(codec, rate=rate, options=options)
    if not isinstance(stream, VideoStream):
        raise ValueError(f"{codec!r} is not a video encoder")
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.time_base = stream.codec_context.time_base = _VIDEO_TB
    stream.codec_context.gop_size = keyint or round(fps or 30.0)
    if rate is None:
        stream.codec_context.framerate = Fraction(0, 1)  # no nominal rate (PyAV would declare 24 fps)
    return stream


def _add_audio(container: OutputContainer, codec: str, sample_rate: int) -> AudioStream:
    stream = container.add_stream(codec, rate=sample_rate, layout="stereo")
    if not isinstance(stream, AudioStream):
        raise ValueError(f"{codec!r} is not an audio encoder")
    stream.time_base = stream.codec_context.time_base = Fraction(1, sample_rate)
    stream.codec_context.open()  # frame_size is known only once the encoder is open
    return stream


def _video_packets(
    stream: VideoStream, times: list[float], base_luma: int, flashes: Sequence[float], flash_len: float
) -> Iterator[tuple[float, list[Packet[Any]]]]:
    grey = _yuv_image(stream.width, stream.height, base_luma)
    white = _yuv_image(stream.width, stream.height, _WHITE)
    for t in times:
        lit = any(f <= t < f + flash_len for f in flashes)
        frame = av.VideoFrame.from_ndarray(white if lit else grey, format="yuv420p")
        frame.pts, frame.time_base = round(t / _VIDEO_TB), _VIDEO_TB
        yield t, stream.encode(frame)
    yield math.inf, stream.encode(None)


def _audio_packets(
    stream: AudioStream, signal: npt.NDArray[np.float32], offset: float
) -> Iterator[tuple[float, list[Packet[Any]]]]:
    """Encode ``signal`` in frames of the encoder's size and sample format (fltp, flt, s16 or s16p)."""
    ctx = stream.codec_context
    fmt, chunk, rate = ctx.format.name, ctx.frame_size or 1024, ctx.sample_rate
    start = round(offset * rate)
    for i in range(0, signal.shape[1], chunk):
        block = signal[:, i : i + chunk]
        if not fmt.endswith("p"):
            block = block.T.reshape(1, -1)  # packed: interleaved channels in one plane
        data: npt.NDArray[np.float32] | npt.NDArray[np.int16] = np.ascontiguousarray(block)
        if fmt.startswith("s16"):
            data = np.ascontiguousarray((block * 32767).round().astype(np.int16))
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
        frame.sample_rate = rate
        frame.pts, frame.time_base = start + i, Fraction(1, rate)
        yield (start + i) / rate, stream.encode(frame)
    yield math.inf, stream.encode(None)
