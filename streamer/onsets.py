"""Which of a live stream's frames and audio chunks may show an onset: cheap tests on the capture thread
(:class:`Onsets`, which marks the item) that decide when the open timestep is worth scoring before it closes
(:class:`OnsetGate`, on the consumer's side: :meth:`streamer.sync.TimestepAssembler.provisional`).

The model decides whether an onset is an event; this only keeps the extra scoring rare on a scene that does not
change suddenly. A frame *jumps* when the share of its pixels that changed by more than ``PIXEL_STEP`` grey
levels since the previous frame is at least ``VIDEO_MIN`` and ``VIDEO_RATIO`` times the stream's usual share (a
road or foliage raises its own bar), and at most ``LIGHTING`` (a change over more of the picture at once is the
light, which the video model does not count either: :class:`models.video.VideoActivity`); an audio chunk jumps
when its power is ``AUDIO_DB`` over the stream's usual (an average of the last seconds' chunks in dB) and audible
at all. A jump is worth a look, and so is the item after it in the same timestep (the other sense's onset may
follow by a frame), up to ``per_step`` looks a timestep.
"""

from __future__ import annotations

import math

import numpy as np

from .media import AudioChunk, VideoFrame

PIXEL_STEP = 24  # grey levels: a pixel that changed by more than this changed (a camera's noise stays under it)
VIDEO_MIN = 0.005  # the least share of the picture that counts as a sudden change
VIDEO_RATIO = 5.0  # ... and how many times the usual share it must be
LIGHTING = 0.3  # ... and at most this share: the video model's ``lighting``
AUDIO_DB = 12.0  # dB over the usual power of the stream's chunks (a clear sound is 14 dB over its bed)
AUDIO_FLOOR_DB = -70.0  # dBFS: quieter chunks never jump
MEMORY_S = 2.0  # seconds the usual levels remember (an exponential average)


class Onsets:
    """The jump tests of one connection's items, run on its capture thread as each item is handed off
    (:meth:`streamer.worker.WorkerContext.send`): an item that jumped is marked (``onset``), and the hand-off wakes
    the stream's consumer for it at once instead of at the next timestep boundary
    (:class:`streamer.handoff.MediaQueue`), so its provisional timestep is cut while the timestep is still open."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._prev: np.ndarray | None = None
        self._prev_t = 0.0
        self._video_usual: float | None = None
        self._audio_usual: float | None = None

    def jumped(self, item: VideoFrame | AudioChunk) -> bool:
        return self.video(item) if isinstance(item, VideoFrame) else self.audio(item)

    def video(self, frame: VideoFrame) -> bool:
        """Whether ``frame`` changed the picture suddenly (it becomes the previous frame either way)."""
        luma = frame.luma[::2, ::2]
        prev, self._prev = self._prev, luma
        if prev is None or prev.shape != luma.shape:
            self._prev_t = frame.t
            return False
        share = float(np.count_nonzero(np.abs(luma.astype(np.int16) - prev) > PIXEL_STEP)) / luma.size
        dt, self._prev_t = max(frame.t - self._prev_t, 0.0), frame.t
        usual = self._video_usual
        self._video_usual = share if usual is None else _average(usual, share, dt)
        return usual is not None and max(VIDEO_MIN, VIDEO_RATIO * usual) <= share <= LIGHTING

    def audio(self, chunk: AudioChunk) -> bool:
        """Whether ``chunk`` is suddenly louder than the stream's recent chunks."""
        if not len(chunk.samples):
            return False
        x = chunk.samples.astype(np.float32, copy=False)
        db = 10.0 * math.log10(float(np.dot(x, x)) / len(x) + 1e-12)
        usual = self._audio_usual
        self._audio_usual = db if usual is None else _average(usual, db, len(x) / self.sample_rate)
        return usual is not None and db >= AUDIO_FLOOR_DB and db >= usual + AUDIO_DB


class OnsetGate:
    """One live stream's looks, on its consumer's side: which of its items (marked by :class:`Onsets`) get the open
    timestep scored. ``per_step``: looks at most per timestep."""

    def __init__(self, per_step: int = 3) -> None:
        self.per_step = per_step
        self._armed_k: int | None = None
        self._looks = 0
        self._follow = False  # the item after a jump gets a look

    def look(self, k: int, jumped: bool) -> bool:
        """Whether to score the open timestep ``k`` now: the item jumped, or it is the next after a jump of ``k``
        (the other sense may follow by a frame); at most ``per_step`` looks a timestep."""
        if self._armed_k != k:
            self._armed_k, self._looks, self._follow = k, 0, False
        if self._looks >= self.per_step or not (jumped or self._follow):
            return False
        self._looks += 1
        self._follow = jumped
        return True

    def reset(self) -> None:
        """A discontinuity: nothing is armed."""
        self._armed_k = None


def _average(usual: float, value: float, dt: float) -> float:
    w = 1.0 - math.exp(-dt / MEMORY_S)
    return usual + w * (value - usual)
