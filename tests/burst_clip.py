"""The analyzer's reference clip: the synthetic source's scene and bursts, encoded into a real file.

``make_burst_clip(path)`` writes H.264 video (yuv420p, a key frame every second) and Opus (or AAC) audio,
rendered by the same code as ``synthetic:`` (:func:`streamer.synthetic.render_luma`, ``render_audio``): a
static scene and a low noise floor with, by default, a moving square and a tone together at 4 s, the tone
alone at 9 s and the square alone at 14 s, 1 s each. So a file, an RTSP server playing that file and the
synthetic source itself must all give the same events.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streamer.demo_scene import DEMO_DURATION_S, DEMO_EVENTS
from streamer.synthetic import SyntheticParams, render_audio, render_luma

BURSTS = DEMO_EVENTS
# (kind, start) of each default burst and which modality shows it
BURST_TIMES = {"av": 4.0, "a": 9.0, "v": 14.0}


def make_burst_clip(
    path: Path,
    *,
    events: str = BURSTS,
    duration: float = DEMO_DURATION_S,
    width: int = 320,
    height: int = 180,
    fps: int = 30,
    audio_codec: str = "libopus",
    sample_rate: int = 48000,
    keyint: int = 10,
    scene: dict[str, str] | None = None,
) -> Path:
    """``keyint``: frames between key frames. Short, because a live client joining an RTSP stream drops what
    it reads while probing (~0.5 s) and starts its video at the next key frame. ``scene``: more ``synthetic:``
    parameters (``length``, ``noise_db``, ``video_noise``, ``seed``...)."""
    params = SyntheticParams.parse("clip", {"events": events, "duration": str(duration), **(scene or {})})
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "veryfast", "tune": "zerolatency"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.gop_size = keyint
        video.time_base = Fraction(1, fps)
        audio = container.add_stream(audio_codec, rate=sample_rate, layout="mono")
        chroma = np.full((height // 2, width), 128, np.uint8)
        chunk = 960  # 20 ms at 48 kHz, Opus' frame
        n_frames, n_samples = round(duration * fps), round(duration * sample_rate)
        frame_i = sample_i = 0
        while frame_i < n_frames or sample_i < n_samples:
            if frame_i < n_frames and (sample_i >= n_samples or frame_i / fps <= sample_i / sample_rate):
                luma = render_luma(params, frame_i, (width, height))
                frame = av.VideoFrame.from_ndarray(np.concatenate([luma, chroma]), format="yuv420p")
                frame.pts, frame.time_base = frame_i, Fraction(1, fps)
                container.mux(video.encode(frame))
                frame_i += 1
            else:
                count = min(chunk, n_samples - sample_i)
                samples = render_audio(params, sample_i, count, sample_rate)
                aframe = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
                aframe.sample_rate, aframe.pts, aframe.time_base = sample_rate, sample_i, Fraction(1, sample_rate)
                container.mux(audio.encode(aframe))
                sample_i += count
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path
