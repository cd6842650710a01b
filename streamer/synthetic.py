"""``synthetic:``, the built-in live A/V source: no file, no network, deterministic.

A static textured scene and a low audio noise floor, with scheduled activity of ``length`` seconds each::

    synthetic:?events=av@4,a@9,v@14&duration=20

``v``: a bright square (12% of the frame) sweeps across the picture; ``a``: a tone burst; ``av``: both. Parameters
(all optional): ``events`` (default ``av@4,a@9,v@14``: the demo's scene, :mod:`.demo_scene`), ``length`` (1 s),
``duration`` (20 s; ``0`` runs forever), ``fps`` (30), ``width``/``height`` (640x360), ``noise_db`` (audio floor,
-50 dBFS), ``tone_db`` (-10 dBFS), ``tone_hz`` (1000), ``video_noise`` (luma noise std, 1.0), ``seed`` (0),
``realtime`` (1: paced like a camera; 0: as fast as possible, with backpressure, for tests and benchmarks). The same
parameters always give the same pictures and samples.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np
import numpy.typing as npt

from .audio import AudioConverter
from .demo_scene import DEMO_DURATION_S, DEMO_EVENTS
from .errors import SourceSpecError
from .media import AudioInfo, LumaImage, Samples, StreamInfo, VideoFrame, VideoInfo
from .worker import Pacer, WorkerContext

_AUDIO_CHUNK = 0.02  # seconds of audio per chunk, like an Opus packet
_KINDS = ("av", "a", "v")


@dataclass(frozen=True)
class Burst:
    kind: str  # "av", "a" or "v"
    start: float
    length: float

    def active(self, t: float) -> bool:
        return self.start <= t < self.start + self.length


@dataclass(frozen=True, kw_only=True)
class SyntheticParams:
    events: tuple[Burst, ...] = ()
    duration: float = 20.0  # 0: forever
    fps: float = 30.0
    width: int = 640
    height: int = 360
    noise_db: float = -50.0
    tone_db: float = -10.0
    tone_hz: float = 1000.0
    video_noise: float = 1.0
    seed: int = 0

    @classmethod
    def parse(cls, stream_id: str, params: Mapping[str, str]) -> SyntheticParams:
        def number(name: str, default: float, lo: float, hi: float) -> float:
            raw = params.get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not lo <= value <= hi:
                raise SourceSpecError(stream_id, f"synthetic: {name}={raw!r} must be a number in [{lo:g}, {hi:g}]")
            return value

        unknown = set(params) - {*cls.__dataclass_fields__, "length", "realtime"}
        if unknown:
            raise SourceSpecError(stream_id, f"synthetic: unknown parameter(s) {', '.join(sorted(unknown))}")
        length = number("length", 1.0, 0.01, 3600)
        events = []
        for item in filter(None, params.get("events", DEMO_EVENTS).split(",")):
            kind, _, at = item.partition("@")
            try:
                start = float(at)
            except ValueError:
                start = -1.0
            if kind not in _KINDS or not 0 <= start < 1e6:
                raise SourceSpecError(
                    stream_id, f"synthetic: bad event {item!r}: write KIND@SECONDS with KIND one of av, a, v"
                )
            events.append(Burst(kind, start, length))
        return cls(
            events=tuple(events),
            duration=number("duration", DEMO_DURATION_S, 0, 1e7),
            fps=number("fps", 30.0, 1, 240),
            width=int(number("width", 640, 16, 7680)),
            height=int(number("height", 360, 16, 4320)),
            noise_db=number("noise_db", -50.0, -120, 0),
            tone_db=number("tone_db", -10.0, -120, 0),
            tone_hz=number("tone_hz", 1000.0, 20, 20000),
            video_noise=number("video_noise", 1.0, 0, 50),
            seed=int(number("seed", 0, 0, 2**31)),
        )

    def active(self, kind: str, t: float) -> bool:
        return any(kind in burst.kind and burst.active(t) for burst in self.events)

    def object_box(self, t: float, size: tuple[int, int]) -> tuple[int, int, int] | None:
        """(x, y, side) of the moving square in an image of ``size``, or None when no video burst runs."""
        for burst in self.events:
            if "v" in burst.kind and burst.active(t):
                width, height = size
                side = max(2, round(math.sqrt(0.12 * width * height)))
                progress = (t - burst.start) / burst.length
                return round(progress * (width - side)), (height - side) // 2, side
        return None


@functools.lru_cache(maxsize=8)
def _background(width: int, height: int, seed: int) -> npt.NDArray[np.float32]:
    """A static scene: a soft gradient with a few fixed blobs, the same for a given seed at any size."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    scene = 60 + 40 * (x / width) + 20 * (y / height)
    rng = np.random.default_rng(seed)
    for cx, cy, r, level in rng.uniform([0, 0, 0.05, -25], [1, 1, 0.2, 25], size=(6, 4)):
        scene += level * np.exp(-(((x / width - cx) ** 2 + (y / height - cy) ** 2) / (2 * r * r)))
    return np.asarray(scene, dtype=np.float32)


def render_luma(p: SyntheticParams, index: int, size: tuple[int, int]) -> LumaImage:
    """Luma of video frame ``index`` at ``size = (width, height)``."""
    width, height = size
    image = _background(width, height, p.seed).copy()
    if p.video_noise > 0:
        image += np.random.default_rng((p.seed, index)).normal(0, p.video_noise, image.shape).astype(np.float32)
    box = p.object_box(index / p.fps, size)
    if box is not None:
        x, y, side = box
        image[y : y + side, x : x + side] = 230
    luma: LumaImage = np.clip(image, 0, 255).astype(np.uint8)
    return luma


def render_audio(p: SyntheticParams, start: int, count: int, rate: int) -> Samples:
    """Samples ``[start, start + count)`` at ``rate``: the noise floor, plus the tone during audio bursts."""
    chunk = round(_AUDIO_CHUNK * rate)
    out = np.empty(count, np.float32)
    noise_rms = 10 ** (p.noise_db / 20)
    for n in range(start // chunk, (start + count - 1) // chunk + 1):  # noise seeded per chunk: deterministic
        a, b = max(n * chunk, start), min((n + 1) * chunk, start + count)
        rng = np.random.default_rng((p.seed, 1, n))
        out[a - start : b - start] = rng.normal(0, noise_rms, chunk)[a - n * chunk : b - n * chunk]
    t = (start + np.arange(count)) / rate
    gate = np.zeros(count, np.float32)
    for burst in p.events:
        if "a" in burst.kind:
            gate[(t >= burst.start) & (t < burst.start + burst.length)] = 1.0
    if gate.any():
        peak = math.sqrt(2) * 10 ** (p.tone_db / 20)  # tone_db is the tone's RMS level
        out += gate * peak * np.sin(2 * np.pi * p.tone_hz * t).astype(np.float32)
    return out


@dataclass(frozen=True, slots=True)
class SyntheticFullFrame:
    resident: ClassVar[bool] = False  # drawn again when asked for
    params: SyntheticParams
    index: int

    def to_bgr(self) -> npt.NDArray[np.uint8]:
        luma = render_luma(self.params, self.index, (self.params.width, self.params.height))
        return np.asarray(cv2.cvtColor(luma, cv2.COLOR_GRAY2BGR), dtype=np.uint8)


def run_synthetic(ctx: WorkerContext) -> None:
    spec, options = ctx.spec, ctx.options
    p = SyntheticParams.parse(spec.stream_id, spec.params)
    rate = options.sample_rate
    ctx.timeline.start_segment(ctx.anchor, 0.0)
    ctx.opened(
        StreamInfo(
            stream_id=spec.stream_id,
            uri=spec.redacted,
            kind=spec.kind.value,
            live=spec.is_live,
            video=VideoInfo(codec="rawvideo", width=p.width, height=p.height, fps=p.fps),
            audio=AudioInfo(codec="pcm_f32le", sample_rate=rate, channels=1),
            duration=p.duration or None,
        )
    )
    pacer = Pacer(ctx.quit) if spec.is_live else None
    converter = AudioConverter(rate)
    chunk = round(_AUDIO_CHUNK * rate)
    end = p.duration if p.duration > 0 else math.inf
    frame_index = sample_index = 0
    while not ctx.quit.is_set():
        tv, ta = frame_index / p.fps, sample_index / rate
        if min(tv, ta) >= end:
            return
        if tv <= ta:
            t = ctx.timeline.to_stream_time("video", tv)
            if pacer is not None:
                pacer.wait(t)
            luma = render_luma(p, frame_index, options.luma_size)
            full = SyntheticFullFrame(p, frame_index) if options.keep_full_frames else None
            ctx.send(VideoFrame(t=t, luma=luma, full=full, duration=1 / p.fps, wall_time=time.time()))
            ctx.timeline.reached(t + 1 / p.fps)
            frame_index += 1
        else:
            count = min(chunk, math.ceil((end - ta) * rate)) if end < math.inf else chunk
            t = ctx.timeline.to_stream_time("audio", ta)
            if pacer is not None:
                pacer.wait(t)
            samples = render_audio(p, sample_index, count, rate)
            ctx.send(converter.add_samples(samples, t, time.time()))
            ctx.timeline.reached(t + count / rate)
            sample_index += count
