"""Cut one stream's video frames and audio samples into timesteps of ``hop`` seconds.

Timestep ``k`` covers ``[k*hop, (k+1)*hop)``. It is emitted as soon as every modality the source carries has
passed its end; when one modality lags the other by more than ``max_wait`` seconds of media time (a stalled or
absent track) it is emitted without it, flagged missing. Timesteps come out in order, each once; data arriving
for an interval already emitted is late: late video frames join the next timestep, late audio is dropped, both
counted. Pure logic, no I/O: the caller pushes items and forwards what comes back.

Before the open timestep closes, :meth:`TimestepAssembler.provisional` cuts it as far as its data has come
(marked ``provisional``): a live stream's caller asks for it when a frame or chunk may show an onset
(:mod:`streamer.onsets`), so that a clear event can start without waiting for the end of the hop.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .media import AudioChunk, Samples, Timestep, VideoFrame
from .settings import CAPTURE, LEARN, boolean, integer, number, setting

BOUNDARY_EPS = 1e-3  # seconds: timestamps within a millisecond of a boundary count as reaching it


@dataclass(frozen=True, kw_only=True)
class SyncOptions:
    """How a stream is cut into timesteps. ``hop`` and ``sample_rate`` are the home of those settings: the
    source's ``segment_align`` and ``sample_rate`` and the model's take their values from here."""

    hop: float = setting(
        0.1, section="stream", key="hop_ms", unit="ms", scale=1000, check=number(5, 10000),
        commands=CAPTURE | LEARN, help="timestep length: the analysis's resolution in media time",
    )  # fmt: skip
    context: float = setting(
        0.1, section="model", key="context_ms", unit="ms", scale=1000, check=number(0, 10000), commands=CAPTURE,
        help="audio look-back carried with each timestep (the audio window is this plus the hop)",
    )  # fmt: skip
    max_wait: float = setting(
        0.5, section="stream", key="sync_wait_ms", unit="ms", scale=1000, check=number(0), commands=CAPTURE,
        help="media time one track may lead the other before the lagging one counts as missing",
    )  # fmt: skip
    sample_rate: int = setting(
        16000, section="model", unit="Hz", check=integer(1000, 192000), commands=CAPTURE,
        help="analysis audio: mono at this rate",
    )  # fmt: skip
    early: bool = setting(
        True, section="stream", key="early_start", check=boolean, commands=CAPTURE,
        help="live streams: a frame or audio chunk that changes suddenly is scored as soon as it is decoded, so a "
        "clear event starts then instead of when its timestep closes",
    )  # fmt: skip

    def __post_init__(self) -> None:
        if not 0.005 <= self.hop <= 10.0:
            raise ValueError(f"hop must be between 5 ms and 10 s, got {self.hop} s")
        if self.context < 0 or self.max_wait < 0:
            raise ValueError("context and max_wait must be >= 0")
        if self.sample_rate < 1000:
            raise ValueError(f"sample_rate must be >= 1000 Hz, got {self.sample_rate}")


@dataclass
class SyncStats:
    emitted: int = 0
    late_frames: int = 0
    late_samples: int = 0
    video_missing: int = 0
    audio_missing: int = 0


class TimestepAssembler:
    def __init__(self, stream_id: str, options: SyncOptions, *, has_video: bool, has_audio: bool) -> None:
        self.stream_id = stream_id
        self.options = options
        self.stats = SyncStats()
        self.has_video = has_video
        self.has_audio = has_audio
        self._sr = options.sample_rate
        self._ctx = round(options.context * self._sr)
        self._eps_samples = round(BOUNDARY_EPS * self._sr)
        self._next_k = 0
        self._frames: list[VideoFrame] = []
        self._last_frame: VideoFrame | None = None
        self._video_wm = 0.0  # all video before this stream time has arrived
        # Audio: samples [_buf_start, _audio_wm) of the stream, at sample index = round(t * sample_rate).
        self._buf: Samples = np.zeros(0, np.float32)
        self._buf_start = 0
        self._audio_wm = 0
        self._audio_first: int | None = None
        self._reset_next = False  # the next timestep follows a discontinuity

    @property
    def next_k(self) -> int:
        """The next timestep to be emitted: the open one."""
        return self._next_k

    @property
    def next_t(self) -> float:
        """Start of the next timestep to be emitted."""
        return self._next_k * self.options.hop

    def set_tracks(self, *, has_video: bool, has_audio: bool) -> None:
        """Tracks the source carries; may change on reconnect."""
        self.has_video, self.has_audio = has_video, has_audio

    def push_video(self, frame: VideoFrame) -> list[Timestep]:
        if frame.t < self.next_t - BOUNDARY_EPS:
            self.stats.late_frames += 1
        self._frames.append(frame)
        self._video_wm = max(self._video_wm, frame.t + (frame.duration or 0.0))
        return self._drain()

    def push_audio(self, chunk: AudioChunk) -> list[Timestep]:
        start, samples = round(chunk.t * self._sr), chunk.samples
        emitted = round(self.next_t * self._sr)
        if start < emitted:  # belongs to timesteps already out: late
            cut = min(emitted - start, len(samples))
            self.stats.late_samples += cut
            samples, start = samples[cut:], start + cut
        if start < self._audio_wm:  # overlaps what is buffered: keep the first copy
            cut = min(self._audio_wm - start, len(samples))
            samples, start = samples[cut:], start + cut
        if len(samples):
            if self._audio_first is None:
                self._audio_first = start
            self._append_audio(start, samples)
        return self._drain()

    def provisional(self) -> Timestep | None:
        """The open timestep as far as its data has come: its frames so far (else the last frame again) and the
        latest ``hop`` of audio with its context (so a sound that began late in the previous timestep is heard
        whole). Scored at once and learned from not at all (:meth:`models.fusion.FusionModel.score`); its
        timestep follows when it closes. None right after a discontinuity (the stream starts afresh) or before
        any data."""
        if self._reset_next or (self._last_frame is None and not self._frames and self._audio_first is None):
            return None
        k, hop = self._next_k, self.options.hop
        end = (k + 1) * hop
        frames = [f for f in self._frames if f.t < end - BOUNDARY_EPS]
        repeated = not frames and self._last_frame is not None
        if repeated:
            assert self._last_frame is not None
            frames = [self._last_frame]
        s1 = self._audio_wm
        window = self._audio_window(s1 - self._ctx - round(hop * self._sr), s1)
        audio_missing = self._audio_first is None or self._audio_wm <= round(k * hop * self._sr)
        return Timestep(
            stream_id=self.stream_id, k=k, t=k * hop, hop=hop, frames=tuple(frames), audio_window=window,
            context=self._ctx, video_repeated=repeated, video_missing=not frames, audio_missing=audio_missing,
            wall_time=time.time(), provisional=True,
        )  # fmt: skip

    def discontinuity(self, t: float) -> list[Timestep]:
        """Flush what is pending, then continue at the timestep holding ``t`` (never earlier than now)."""
        out = self.flush()
        self._next_k = max(self._next_k, math.floor(t / self.options.hop + 1e-9))
        self._frames.clear()
        self._last_frame = None
        self._video_wm = self.next_t
        self._reset_audio()
        self._reset_next = True
        return out

    def flush(self) -> list[Timestep]:
        """Emit every timestep up to the end of the data received (end of stream or of a segment)."""
        end = max(self._video_wm, self._audio_wm / self._sr)
        if self._frames:
            end = max(end, self._frames[-1].t + 1e-6)
        out: list[Timestep] = []
        while self.next_t < end - BOUNDARY_EPS:
            out.append(self._emit(final=True))
        return out

    # -- internals --------------------------------------------------------------------------------------------

    def _reset_audio(self) -> None:
        self._buf_start = self._audio_wm = round(self.next_t * self._sr)
        self._buf = np.zeros(0, np.float32)
        self._audio_first = None

    def _append_audio(self, start: int, samples: Samples) -> None:
        if self._audio_wm == self._buf_start and len(self._buf) == 0:
            self._buf_start = self._audio_wm = start  # first data: no gap to fill before it
        gap = start - self._audio_wm
        parts = [self._buf]
        if gap > 0:
            parts.append(np.zeros(gap, np.float32))  # a hole in the audio reads as silence
        parts.append(samples.astype(np.float32, copy=False))
        self._buf = np.concatenate(parts)
        self._audio_wm = start + len(samples)

    def _drain(self) -> list[Timestep]:
        out: list[Timestep] = []
        hop, wait = self.options.hop, self.options.max_wait
        while True:
            end = self.next_t + hop
            video_done = not self.has_video or self._video_wm >= end - BOUNDARY_EPS
            # in samples: in float, audio 1 ms short of a boundary (a resampler's delay on audio aligned with the
            # timesteps) reached 0.1 s and 0.2 s but not 0.3 s, and waited there for one more packet
            audio_done = not self.has_audio or self._audio_wm >= round(end * self._sr) - self._eps_samples
            if not (video_done and audio_done):
                lead = max(
                    self._video_wm if self.has_video else 0.0, self._audio_wm / self._sr if self.has_audio else 0.0
                )
                if lead < end + wait - BOUNDARY_EPS:
                    return out
            out.append(self._emit(final=False))

    def _emit(self, *, final: bool) -> Timestep:
        k, hop = self._next_k, self.options.hop
        start, end = k * hop, (k + 1) * hop
        # Video: the frames before the end (late ones included), else the previous frame repeated.
        cut = 0
        while cut < len(self._frames) and self._frames[cut].t < end - BOUNDARY_EPS:
            cut += 1
        frames, self._frames = self._frames[:cut], self._frames[cut:]
        repeated = False
        video_passed = self._video_wm >= end - BOUNDARY_EPS or final
        if frames:
            self._last_frame = frames[-1]
        elif self.has_video and video_passed and self._last_frame is not None:
            frames, repeated = [self._last_frame], True
        video_missing = not frames
        # Audio: the context and the interval, zeros where there is no data.
        s0, s1 = round(start * self._sr), round(end * self._sr)
        if final:
            s1 = max(s0, min(s1, self._audio_wm))
        window = self._audio_window(s0 - self._ctx, s1)
        audio_missing = self._audio_first is None or self._audio_first >= s1 or self._audio_wm <= s0
        self._trim_audio(s0 - self._ctx)  # a hop more than the next window needs: a provisional's reaches back
        self._next_k += 1
        reset, self._reset_next = self._reset_next, False
        self.stats.emitted += 1
        self.stats.video_missing += video_missing
        self.stats.audio_missing += audio_missing
        return Timestep(
            stream_id=self.stream_id,
            k=k,
            t=start,
            hop=hop,
            frames=tuple(frames),
            audio_window=window,
            context=self._ctx,
            video_repeated=repeated,
            video_missing=video_missing,
            audio_missing=audio_missing,
            wall_time=time.time(),
            reset=reset,
        )

    def _audio_window(self, a: int, b: int) -> Samples:
        """Samples ``[a, b)``. Where the window starts before the segment's first sample (a stream joined or
        reconnected mid-timestep), that head is the following samples mirrored, not silence: a jump from digital
        silence into the room's sound would read as an onset and teach the baselines a level never heard."""
        lo, hi = max(a, self._buf_start), min(b, self._buf_start + len(self._buf))
        if lo == a and hi == b:
            return self._buf[a - self._buf_start : b - self._buf_start].copy()
        window = np.zeros(b - a, np.float32)
        if hi > lo:
            window[lo - a : hi - a] = self._buf[lo - self._buf_start : hi - self._buf_start]
            if lo > a:
                window[: lo - a] = np.resize(window[lo - a : hi - a], lo - a)[::-1]
        return window

    def _trim_audio(self, keep_from: int) -> None:
        drop = keep_from - self._buf_start
        if drop <= 0:
            return
        if drop >= len(self._buf):
            self._buf = np.zeros(0, np.float32)
            self._buf_start = keep_from
            self._audio_wm = max(self._audio_wm, keep_from)
        else:
            self._buf = self._buf[drop:]
            self._buf_start = keep_from
