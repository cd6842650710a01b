"""Timesteps built from arrays, for model tests: pictures and sounds with known activity."""

from __future__ import annotations

import math

import numpy as np

from pipelines.config import ModelConfig, StreamConfig
from streamer.media import Timestep, VideoFrame
from streamer.settings import default_of

SR = 16000
HOP = 0.1
N_HOP = 1600
N_CTX = 1600
W, H = 160, 90
TAU = default_of(ModelConfig, "tau")  # what a FusionModel is given by the analyzer by default
WEIGHTS = (default_of(StreamConfig, "alpha"), default_of(StreamConfig, "beta"))  # a stream's default alpha, beta


def timestep(
    k: int, frames: list[np.ndarray] | None, audio: np.ndarray | None, stream: str = "s", repeated: bool = False
) -> Timestep:
    """``audio``: the whole signal so far; the timestep takes its window (context + hop) ending at (k+1)*hop."""
    if audio is None:
        window, audio_missing = np.zeros(N_CTX + N_HOP, np.float32), True
    else:
        end = (k + 1) * N_HOP
        window = np.zeros(N_CTX + N_HOP, np.float32)
        chunk = audio[max(0, end - N_CTX - N_HOP) : end]
        window[len(window) - len(chunk) :] = chunk
        audio_missing = False
    video = tuple(VideoFrame(t=k * HOP + i / 30, luma=f) for i, f in enumerate(frames or []))
    return Timestep(
        stream_id=stream, k=k, t=k * HOP, hop=HOP, frames=video, audio_window=window, context=N_CTX,
        video_repeated=repeated, video_missing=not video, audio_missing=audio_missing,
    )  # fmt: skip


def scene(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    return (70 + 50 * x / W + 20 * y / H + rng.normal(0, 6, (H, W))).astype(np.float32)


def noisy(base: np.ndarray, rng: np.random.Generator, sigma: float = 1.5, gain: float = 0.0) -> np.ndarray:
    return np.clip(base + gain + rng.normal(0, sigma, base.shape), 0, 255).astype(np.uint8)


def moving_square_frames(n: int, seed: int = 0, start: int = 0) -> list[np.ndarray]:
    """A uniform bright square of 10% of the picture crossing it (one frame every 1/30 s), over a noisy scene."""
    rng = np.random.default_rng(seed)
    base = scene(seed)
    side = round(math.sqrt(0.1 * W * H))
    frames = []
    for i in range(start, start + n):
        image = base.copy()
        x = round(i * (W - side) / 45) % (W - side)  # crosses in 1.5 s
        y = (H - side) // 2
        image[y : y + side, x : x + side] = 220
        frames.append(noisy(image, rng))
    return frames


def pink_noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    """1/f noise at an RMS of ``dbfs``."""
    n = round(seconds * SR)
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.normal(0, 1, n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    signal = np.fft.irfft(spectrum, n)
    signal *= 10 ** (dbfs / 20) / np.sqrt(np.mean(signal**2))
    return signal.astype(np.float32)


def tone(seconds: float, dbfs: float, hz: float = 1000.0) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (math.sqrt(2) * 10 ** (dbfs / 20) * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def level_dbfs(signal: np.ndarray) -> float:
    return 20 * math.log10(float(np.sqrt(np.mean(signal.astype(np.float64) ** 2))))
