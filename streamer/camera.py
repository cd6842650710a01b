"""Cameras through OpenCV (V4L2), with an optional microphone through PyAV's ALSA input.

``camera:0`` or ``/dev/video0``; parameters ``width``, ``height``, ``fps`` ask the driver for a mode, and
``audio=alsa:DEVICE`` (e.g. ``audio=alsa:hw:1,0``) adds a microphone. Frames and audio are stamped with the
monotonic clock at capture, the only clock the two devices share.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import av
import cv2

from .audio import AudioConverter
from .errors import SourceOpenError, SourceSpecError
from .luma import luma_from_bgr
from .media import ArrayFullFrame, AudioInfo, StreamInfo, VideoFrame, VideoInfo
from .spec import SourceSpec
from .worker import WorkerContext, run_worker

_KNOWN = frozenset({"device", "width", "height", "fps", "audio"})


@dataclass(frozen=True)
class CaptureConfig:
    """How a camera source is opened: ``device`` (index or path) through ``backend`` (V4L2)."""

    device: int | str
    backend: int = cv2.CAP_V4L2
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    audio_format: str | None = None  # "alsa"
    audio_device: str | None = None  # "hw:1,0"

    @property
    def device_path(self) -> str:
        return f"/dev/video{self.device}" if isinstance(self.device, int) else self.device


def capture_config(spec: SourceSpec) -> CaptureConfig:
    params = spec.params
    unknown = set(params) - _KNOWN
    if unknown:
        raise SourceSpecError(spec.stream_id, f"camera: unknown parameter(s) {', '.join(sorted(unknown))}")
    device: int | str = params["device"]
    if isinstance(device, str) and device.isdigit():
        device = int(device)

    def number(name: str) -> float | None:
        raw = params.get(name)
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not 0 < value <= 10000:
            raise SourceSpecError(spec.stream_id, f"camera: {name}={raw!r} must be a positive number")
        return value

    width, height = number("width"), number("height")
    audio_format = audio_device = None
    if "audio" in params:
        audio_format, sep, audio_device = params["audio"].partition(":")
        if audio_format != "alsa" or not sep or not audio_device:
            raise SourceSpecError(spec.stream_id, "camera: audio must be alsa:DEVICE, as in audio=alsa:hw:1,0")
    return CaptureConfig(
        device=device,
        width=int(width) if width else None,
        height=int(height) if height else None,
        fps=number("fps"),
        audio_format=audio_format,
        audio_device=audio_device,
    )


def open_camera(spec: SourceSpec, config: CaptureConfig) -> Any:
    path = config.device_path
    if not os.path.exists(path):
        raise SourceOpenError(spec.stream_id, f"cannot open camera {path}: no such device")
    capture = cv2.VideoCapture(config.device, config.backend)
    if not capture.isOpened():
        capture.release()
        raise SourceOpenError(spec.stream_id, f"cannot open camera {path}: the V4L2 driver refused it (busy?)")
    for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, config.width), (cv2.CAP_PROP_FRAME_HEIGHT, config.height),
                        (cv2.CAP_PROP_FPS, config.fps)):  # fmt: skip
        if value:
            capture.set(prop, value)
    return capture


def open_microphone(spec: SourceSpec, config: CaptureConfig) -> Any:
    try:
        return av.open(config.audio_device or "", format=config.audio_format, options={"fflags": "nobuffer"})
    except (av.FFmpegError, OSError) as exc:
        cause = getattr(exc, "strerror", None) or str(exc)
        raise SourceOpenError(
            spec.stream_id, f"cannot open microphone {config.audio_format}:{config.audio_device}: {cause}"
        ) from exc


def run_camera(ctx: WorkerContext) -> None:
    spec, options = ctx.spec, ctx.options
    config = capture_config(spec)
    capture = open_camera(spec, config)
    mic = open_microphone(spec, config) if config.audio_device else None
    origin = time.monotonic()
    ctx.timeline.start_segment(ctx.anchor, origin)
    audio_info = None
    if mic is not None:
        cc = mic.streams.audio[0].codec_context
        audio_info = AudioInfo(codec=cc.name, sample_rate=cc.sample_rate, channels=cc.channels)
    fps = capture.get(cv2.CAP_PROP_FPS) or None
    ctx.opened(
        StreamInfo(
            stream_id=spec.stream_id,
            uri=spec.redacted,
            kind=spec.kind.value,
            live=True,
            video=VideoInfo(
                codec=_fourcc(capture),
                width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                fps=fps,
            ),
            audio=audio_info,
        )
    )
    mic_thread = None
    if mic is not None:
        mic_thread = threading.Thread(target=run_worker, args=(_microphone(mic), ctx), daemon=True,
                                      name=f"mic-{spec.stream_id}")  # fmt: skip
        mic_thread.start()
    try:
        while not ctx.quit.is_set():
            ok, image = capture.read()
            now = time.monotonic()
            if not ok:
                raise ctx.error(f"camera {config.device_path} stopped delivering frames")
            t = ctx.timeline.to_stream_time("video", now)
            luma = luma_from_bgr(image, options.luma_size)
            full = ArrayFullFrame(image) if options.keep_full_frames else None
            ctx.send(VideoFrame(t=t, luma=luma, full=full, wall_time=time.time()))
            ctx.timeline.reached(t)
    finally:
        ctx.quit.set()
        capture.release()
        if mic_thread is not None:
            mic_thread.join(1.0)


def _microphone(mic: Any) -> Any:
    """The microphone's thread body: samples stamped at capture on the monotonic clock."""

    def worker(ctx: WorkerContext) -> None:
        converter = AudioConverter(ctx.options.sample_rate, hop=ctx.options.segment_align)
        with mic:
            for frame in mic.decode(audio=0):
                if ctx.quit.is_set():
                    return
                now = time.monotonic()
                captured = now - frame.samples / frame.sample_rate  # the first sample's capture time
                for chunk in converter.push(frame, ctx.timeline.to_stream_time("audio", captured), time.time()):
                    ctx.send(chunk)
                    ctx.timeline.reached(chunk.end(ctx.options.sample_rate))

    return worker


def _fourcc(capture: Any) -> str:
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ")
    return text.lower() or "raw"
